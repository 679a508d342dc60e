#!/usr/bin/env bash
# Builds the `warden` Python package (python/, PyO3 + maturin) as a wheel into target/wheels
# and, with --install PYTHON, installs it into that interpreter's environment. The wheel links
# the system OpenSSL (libssl3) and is for this machine kind; no manylinux repair.
#     scripts/build-python.sh [--install .venv/bin/python3]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
INSTALL=""
if [ "${1:-}" = "--install" ]; then
  INSTALL="${2:?--install needs a python}"
  # Absolute, without resolving the venv's symlink (maturin runs from python/).
  INSTALL="$(cd "$(dirname "$INSTALL")" && pwd)/$(basename "$INSTALL")"
  PYTHON="$INSTALL"
fi
MATURIN="$(dirname "$PYTHON")/maturin"
[ -x "$MATURIN" ] || MATURIN=maturin
out="${CARGO_TARGET_DIR:-$PWD/target}/wheels"
rm -f "$out"/warden-*.whl
(cd python && "$MATURIN" build --release --locked --auditwheel skip --interpreter "$PYTHON" --out "$out")
if [ -n "$INSTALL" ]; then
  "$INSTALL" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$out"/warden-*.whl
fi
ls "$out"/warden-*.whl
