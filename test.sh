#!/usr/bin/env bash
# The test command: set up with the test extra, then run every test (arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")"
bin/setup --test
exec .venv/bin/python -m pytest "$@"
