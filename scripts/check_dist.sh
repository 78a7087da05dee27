#!/usr/bin/env bash
# Build the sdist and the wheel, install the wheel into a clean virtual environment and run the sdist's
# tests against it (the tests and conftest travel in the sdist). Usage: bash scripts/check_dist.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m build -q -o "$work/dist" . >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$(ls "$work"/dist/*.whl)[dev]"
tar xzf "$work"/dist/*.tar.gz -C "$work"
cd "$work"/dynamicvit-*/
rm -rf dynamicvit  # the tests must run against the installed wheel, not the sdist's source
"$work/venv/bin/python" -c "import dynamicvit, sys; assert 'site-packages' in dynamicvit.__file__, dynamicvit.__file__"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider
echo "[check_dist] the wheel installs and the sdist's tests pass"
