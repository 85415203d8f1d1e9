#!/usr/bin/env bash
# Start deviceflow from a clone: creates .venv if missing, installs, serves.
#   ./run.sh --demo            serve with the built-in Enedis simulator on :8080
#   ./run.sh [--port N] ...    serve with the configuration from .env / the environment
#   ./run.sh test [pytest args] run the test suite
# In the Home Assistant add-on image, run.sh sits alone at / (no pyproject.toml
# beside it) and starts the installed package with the add-on options (with
# --demo when the add-on's `demo` option is on).
# OPTIONS_PATH names an add-on options file (default /data/options.json in the
# image; read by deviceflow itself from a clone); .env and the environment win over it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# --- add-on image: the package is installed, there is nothing to build ---
if [ ! -f "$here/pyproject.toml" ]; then
  options="${OPTIONS_PATH:-/data/options.json}"
  # The add-on's `demo` option: the simulated Enedis. An unreadable options file
  # is left to deviceflow, which names the problem in one line.
  demo=()
  if python3 - "$options" 2>/dev/null <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as options:
    sys.exit(0 if json.load(options).get("demo") is True else 1)
EOF
  then
    demo=(--demo)
  fi
  # A container's server listens on all its interfaces (demo mode alone keeps to loopback).
  exec deviceflow serve --host 0.0.0.0 "${demo[@]}" --options "$options" "$@"
fi

venv="$here/.venv"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Reinstall when pyproject.toml changed since the last install.
stamp="$venv/.deviceflow-installed"
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "${here}[test]"
  touch "$stamp"
fi

cd "$here"
if [ "${1:-}" = "test" ]; then
  shift
  exec "$venv/bin/python" -m pytest "$@"
fi
exec "$venv/bin/python" -m deviceflow serve "$@"
