#!/usr/bin/env bash
# Set up everything the pipeline and the tests need, idempotently:
#   - Debian's dataset-fashion-mnist and fortunes (real data of the default config; needs root or sudo);
#   - a Python 3.11 virtual environment in .venv with the pinned lock file and this package.
# Usage: bash envs/setup.sh   (then: . .venv/bin/activate)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || [ ! -d /usr/share/games/fortunes ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist fortunes >/dev/null
    elif command -v sudo >/dev/null; then
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist fortunes >/dev/null
    else
        echo "setup: install Debian's dataset-fashion-mnist and fortunes (real data of the default config)" >&2
    fi
fi

PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum envs/requirements.lock envs/requirements-nodeps.txt pyproject.toml | sha256sum | cut -c1-16)
if [ ! -e "$stamp" ]; then
    for args in "-r envs/requirements.lock" "--no-deps -r envs/requirements-nodeps.txt" "--no-deps -e ."; do
        # shellcheck disable=SC2086
        .venv/bin/python -m pip install -q --disable-pip-version-check $args > .venv/pip.log 2>&1 \
            || { grep -v "^WARNING: Location" .venv/pip.log | tail -20; exit 1; }
    done
    .venv/bin/python -c "import curvmem, torch, timm, snakemake" # fail here, not three rules later
    rm -f .venv/.installed-* && touch "$stamp"
fi
echo "setup: ready (. .venv/bin/activate)"
