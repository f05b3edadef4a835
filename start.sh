#!/usr/bin/env bash
# The main command: set up, load a catalogue into the store if it is not there yet, start the page.
# Usage: ./start.sh [CATALOGUE]   (default: the shipped sample, data/sample/hymns.csv)
# Settings come from the environment or .env (QDRANT_URL, QDRANT_PATH, QDRANT_COLLECTION, ...);
# SONGSPACE_PORT sets the page's port (default 8501).
set -euo pipefail
cd "$(dirname "$0")"
bin/setup
catalogue="${1:-data/sample/hymns.csv}"
[ -f "$catalogue" ] || { echo "songspace: no catalogue at $catalogue" >&2; exit 2; }
.venv/bin/python -m ingest.first_run "$catalogue"
exec .venv/bin/python -m streamlit run ui/app.py \
  --server.port "${SONGSPACE_PORT:-8501}" --server.address "${SONGSPACE_ADDRESS:-0.0.0.0}" \
  --server.headless true --browser.gatherUsageStats false
