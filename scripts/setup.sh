#!/usr/bin/env bash
# Installs what building eemu needs, reusing what is already there:
#   .venv with the PyPI wheel torch==2.11.0 (skipped when LIBTORCH names a libtorch), and
#   pyarrow, which the tests use to read eemu's Parquet output as data engineers do.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.11.0
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import pyarrow' 2>/dev/null; then
  echo "setup: installing pyarrow into .venv"
  .venv/bin/pip install --quiet "pyarrow==26.0.1"
fi
if [ -n "${LIBTORCH:-}" ]; then
  echo "setup: using LIBTORCH=$LIBTORCH"
  exit 0
fi
have=$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
if [ "$have" != "$TORCH_VERSION" ]; then
  echo "setup: installing torch==$TORCH_VERSION into .venv (about 3 GB, once)"
  .venv/bin/pip install --quiet "torch==$TORCH_VERSION"
fi
echo "setup: torch $(.venv/bin/python -c 'import torch; print(torch.__version__)') ready in .venv"
