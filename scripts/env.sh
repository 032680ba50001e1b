# Sourced by the Makefile targets: the environment that builds and runs eemu against the venv's
# libtorch (PyPI wheel torch==2.11.0). A user-provided LIBTORCH takes precedence over the venv.
EEMU_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${LIBTORCH:-}" ]; then
  export VIRTUAL_ENV="$EEMU_ROOT/.venv"
  export PATH="$VIRTUAL_ENV/bin:$PATH"
  export LIBTORCH_USE_PYTORCH=1
fi
