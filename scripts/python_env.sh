# Sourced by scripts/main_job.sh and .ci/run: a Python environment to install into, on any Linux machine.
#
# Debian and Ubuntu ship `python3` without `python`, and their system Python refuses `pip install` (PEP 668), so the
# package goes into a virtual environment: the active one ($VIRTUAL_ENV) if there is one, else DIR (created on first
# use, reused after). `python_env DIR` sets PY to that environment's interpreter and installs torch into it unless it
# already has one: PyPI's default build where an NVIDIA GPU is visible (CUDA), else the CPU build of torch 2.13.0
# (TORCH_INDEX_URL, if set, is the index to take it from: https://download.pytorch.org/whl/cpu gives the small CPU
# build where PyPI's Linux wheel is the CUDA one).

python_env() {
    local dir="$1" base
    if [ -n "${VIRTUAL_ENV:-}" ]; then
        PY="$VIRTUAL_ENV/bin/python"
    else
        base="$(command -v python3 || command -v python || true)"
        if [ -z "$base" ]; then
            echo "error: no python3 on this machine; install Python 3.10 or newer (Debian/Ubuntu: sudo apt-get install python3 python3-venv)" >&2
            return 1
        fi
        if [ ! -x "$dir/bin/python" ] && ! "$base" -m venv "$dir" >/dev/null 2>&1; then
            rm -rf "$dir"
            echo "error: '$base -m venv $dir' failed; on Debian/Ubuntu run 'sudo apt-get install python3-venv' first" >&2
            return 1
        fi
        PY="$dir/bin/python"
    fi
    if "$PY" -c "import torch" >/dev/null 2>&1; then
        return 0
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        "$PY" -m pip install --quiet torch
    else
        "$PY" -m pip install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
    fi
}

# A constraints file that holds torch at the version the environment has, so that installing the package never swaps
# it for another build (an unpinned resolve can pull a multi-GB CUDA build).
torch_constraint() {
    local file
    file="$(mktemp)"
    "$PY" -c "import torch; print('torch==' + torch.__version__)" >"$file"
    echo "$file"
}
