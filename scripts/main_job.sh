#!/usr/bin/env bash
# The main job on a fresh machine: a virtual environment (.venv, or the active one) with torch and this package, then
# fetch the default corpus, train for 20 minutes on the CPU, average, evaluate, translate, save.
# Arguments go to vaswani-main-job (e.g. --minutes 5, --output-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/python_env.sh

python_env .venv
pin="$(torch_constraint)"
trap 'rm -f "$pin"' EXIT
"$PY" -m pip install --quiet -c "$pin" -e ".[plots]"

HF_HUB_OFFLINE=1 "$PY" -m vaswani_hf.cli.main_job "$@"
