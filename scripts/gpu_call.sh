#!/usr/bin/env bash
# The one device call of the GPU issue (run by the `device` tool with carry [".gpu"]; see docs/speed.md).
# `.gpu/` is built here by `python scripts/make_gpu_carry.py`:
#   .gpu/whl/    lpips and spandrel wheels (the device image has neither; no network there)
#   .gpu/cache/  the verified fp16 VGG16 copy (dictsr_core.perceptual.weights.export_half_copies) for the LPIPS term, xz
#   .gpu/data/photos-aim/  `dictsr prepare --source photos --degradation aim` without val_hr (scored here)
# Everything it measures lands in $OUT: bench.json, train.json, metrics.jsonl, sr.tar, weights.pt.NN, log.
# Afterwards, here: python scripts/gpu_results.py --session <files_at> --data data/photos-aim
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
mkdir -p /tmp/dictsr-cache && for f in .gpu/cache/*.xz; do
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "/tmp/dictsr-cache/$(basename "$f" .xz)" || exit 1
done
export PYTHONPATH="/tmp/site:$PWD" DICTSR_CACHE=/tmp/dictsr-cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/log"
python3 -m pytest -q -p no:cacheprovider tests/test_inference_tiled.py -k cuda 2>&1 | tail -2 | tee -a "$OUT/log"  # the CUDA-only tests
python3 scripts/gpu_session.py --data .gpu/data/photos-aim --out "$OUT" --budget-s "${BUDGET_S:-480}" "$@" 2>&1 | tee -a "$OUT/log"
