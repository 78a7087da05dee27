#!/usr/bin/env bash
# Build the sdist and the wheel, install the wheel into a fresh virtual environment and run the sdist's
# tests against it (the tests and conftest travel in the sdist). Usage: bash scripts/check_dist.sh
#
# The third-party dependencies (torch alone is several GB) are not installed a second time: the fresh
# environment sees those of .venv through a .pth file, and `pip check` then proves that they satisfy the
# wheel's declared requirements. dynamicvit itself comes only from the wheel (.venv's editable hook is a
# .pth file of its own, which a path added this way does not run).
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m build -q -o "$work/dist" . >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --no-deps "$(ls "$work"/dist/*.whl)"
"$work/venv/bin/python" -m pip uninstall -q -y setuptools  # the venv's old copy would hide .venv's
site="$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$site/dynamicvit-deps.pth"
"$work/venv/bin/python" -m pip check
tar xzf "$work"/dist/*.tar.gz -C "$work"
cd "$work"/dynamicvit-*/
rm -rf dynamicvit  # the tests must run against the installed wheel, not the sdist's source
"$work/venv/bin/python" -c "import dynamicvit, sys; assert dynamicvit.__file__.startswith('$site'), dynamicvit.__file__"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider
echo "[check_dist] the wheel installs and the sdist's tests pass"
