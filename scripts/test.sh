#!/usr/bin/env bash
# Install samsa_geo into .venv (scripts/install.sh) and run the test suite.
# Extra arguments go to pytest, for example: bash scripts/test.sh -k topk
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec ./.venv/bin/python -m pytest "$@"
