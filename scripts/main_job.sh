#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu machine: install what it needs (the CPU build of PyTorch 2.13.0 first, as
# .ci/run does), then fetch the default corpus, train for 20 minutes on the CPU, average, evaluate, translate, save.
# Arguments go to vaswani-main-job (e.g. --minutes 5, --output-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -e ".[plots]"

HF_HUB_OFFLINE=1 vaswani-main-job "$@"
