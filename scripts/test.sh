#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-dev.txt
# torchattacks (cross-checks and benchmarks only) pins an old `requests` that would break
# streamlit's install, so it comes without its dependencies (it needs none beyond torch).
python -m pip install -q --no-deps torchattacks==3.5.1
# Headless Chromium for the real-browser tests (Debian's package; never `playwright install`).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # subprocesses too (see tests/conftest.py)
exec python -m pytest --durations=25 "$@"
