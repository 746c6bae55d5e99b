#!/usr/bin/env bash
# Install (once) and run the whole test suite offline, plus the linter, the formatter check and the type check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ruff check .
ruff format --check .
mypy  # static type check of dalr_hf/ (configuration: setup.cfg)
python -m pytest -q "$@"
