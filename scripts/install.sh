#!/usr/bin/env bash
# Create .venv at the repository root and install samsa_geo into it with
# everything the tests and examples use. Safe to run again: pip skips what
# is already installed. Set SAMSA_GEO_SKIP_COMPILED=1 to skip the optional
# compiled backends (torch-scatter, torch-cluster), which build from source
# in several minutes each.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(./.venv/bin/python -m pip --disable-pip-version-check)

# Pinned: this version's CPU build installs without a multi-GB CUDA download.
"${pip[@]}" install -q torch==2.13.0
"${pip[@]}" install -q -e ".[chem,viz,train,test]"

# MOSES ships real ZINC-derived SMILES. Its pinned dependencies do not build
# on Python 3.11, and samsa_geo reads only its CSV files.
"${pip[@]}" install -q --no-deps molsets==0.3.1

if [ "${SAMSA_GEO_SKIP_COMPILED:-0}" = "0" ]; then
    # They compile against the installed torch, so no build isolation.
    MAX_JOBS=${MAX_JOBS:-2} "${pip[@]}" install -q --no-build-isolation \
        torch-scatter==2.1.2 torch-cluster==1.6.3
fi

# Open3D needs the system library libusb-1.0 to import.
if ! ./.venv/bin/python -c "import open3d" >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        apt-get install -y -qq libusb-1.0-0 >/dev/null \
            || { apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null; }
    else
        echo "Open3D failed to import. Install libusb-1.0 (Debian: sudo apt-get install libusb-1.0-0)." >&2
    fi
fi
