# Sourced by the top-level scripts: find the project's Python and make `poc` importable from anywhere.
POC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$POC_ROOT/.venv/bin/python" ]]; then PYTHON="$POC_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$POC_ROOT${PYTHONPATH:+:$PYTHONPATH}"
# `python -m` would put the working directory first on sys.path: run from another checkout, its poc/ would win.
export PYTHONSAFEPATH=1
