#!/usr/bin/env bash
# Set up everything dynamicvit needs on a fresh Debian/Ubuntu-like machine:
# the Fashion-MNIST files (Debian package, when apt is available) and a virtual
# environment .venv with the package and its dev tools installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the Fashion-MNIST files (the demo's data) and headless Chromium with its WebDriver (the
# app's browser test)
PACKAGES=""
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || PACKAGES="dataset-fashion-mnist"
command -v chromium >/dev/null && command -v chromedriver >/dev/null || PACKAGES="$PACKAGES chromium chromium-driver"
if [ -n "$PACKAGES" ] && command -v apt-get >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "[setup] installing Debian packages:$PACKAGES"
    # shellcheck disable=SC2086
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $PACKAGES >/dev/null \
        || echo "[setup] warning: could not install$PACKAGES; pass --data-dir to commands that need the data"
fi

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    python3 -m venv .venv
fi
echo "[setup] installing dynamicvit (editable) with dev extras"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || echo "[setup] note: could not upgrade pip; using $(.venv/bin/python -m pip --version)"
if ! .venv/bin/python -m pip install -q -e ".[dev]"; then
    echo "[setup] error: installing dynamicvit and its dependencies failed (see pip's message above)" >&2
    exit 1
fi
.venv/bin/python -c "import dynamicvit, torch, timm; print('[setup] ok: dynamicvit', dynamicvit.__version__, 'torch', torch.__version__, 'timm', timm.__version__)"
