# Shared by scripts/test and scripts/quickstart: make .venv and install the project into it.
# Usage: . scripts/_venv.sh EXTRAS   (e.g. "dev,local")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GEN_SERVICE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
extras="$1"

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "gen-service needs Python 3.11 or newer; $("$PY" --version 2>&1) found. Set PYTHON=python3.11." >&2
  exit 69
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
stamp="$VENV/.installed-$extras"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  if [[ "$extras" == *local* ]] && ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    echo "==> installing llama-cpp-python: the first time it compiles llama.cpp from source"
    echo "    (about 5 minutes on 2 cores; pip caches the wheel, so later installs take seconds)"
  fi
  echo "==> installing gen-service[$extras] into $VENV"
  # Keep going with a useful message when the build fails instead of a bare pip trace.
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$extras]"; then
    echo "pip could not install gen-service[$extras]; see the messages above." >&2
    echo "llama-cpp-python needs a C/C++ compiler and cmake (Debian: apt-get install build-essential cmake)." >&2
    exit 69
  fi
  touch "$stamp"
fi
