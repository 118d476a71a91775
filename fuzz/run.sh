#!/usr/bin/env bash
# Bounded fuzz run for CI: every target of fuzz/ for about SECONDS in total (default 120).
# usage (repo root, llmrec installed in the active venv): bash fuzz/run.sh [SECONDS] [extra args]
# Exits non-zero when any finding is recorded; reproducers land in build/fuzz-findings/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
shift || true
python=${PYTHON:-python}
command -v "$python" >/dev/null || python=python3
exec "$python" -m fuzz --seconds "$seconds" "$@"
