#!/usr/bin/env bash
# The project's test command (README "Tests"; .ci/run runs exactly this): on a fresh machine it
# makes a virtualenv, installs the project with its test extras, installs Debian's Chromium for
# the viewer tests when /usr/bin/chromium is missing (Playwright never downloads a browser of its
# own), checks lint and format, and runs the whole suite. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[dev,dicom,ray]'
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium
fi
ruff check .
ruff format --check .
python -m pytest "$@"
