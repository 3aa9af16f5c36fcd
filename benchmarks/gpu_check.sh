#!/usr/bin/env bash
# One prepared GPU session: CUDA correctness tests, then MaskCut and training throughput.
# Usage on a CUDA machine from the repo root (results go to ${OUT:-/tmp/gpu_check}):
#   bash benchmarks/gpu_check.sh [seconds-for-maskcut] [seconds-for-training] [seconds-for-groupvit]
# Wheels of packages the machine lacks go in .whl/ (made by benchmarks/gpu_wheels.sh; installed to /tmp/site first).
set -u
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
T_MC=${1:-150}; T_TR=${2:-360}; T_GV=${3:-150}
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else export PYTHONPATH=$PWD; fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/env.txt"
timeout 70 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py "tests/test_features.py::test_cuda_matches_cpu" -s 2>&1 | tee "$OUT/cuda_tests.txt" | tail -25
timeout "$T_MC" python3 benchmarks/maskcut_speed.py --device cuda --images 48 --batch_size 16 --dtype fp16 --crf_workers 14 --prefetch 4 --solvers arpack,torch --graphs 8 --no_reference 2>&1 | tee "$OUT/maskcut_speed.txt" | tail -30
timeout "$T_TR" python3 benchmarks/train_speed.py --device cuda --iters 150 --warmup 20 --batch_size 2 --amp fp16 --predict_images 8 --num_workers 4 --out /tmp/tb 2>&1 | tee "$OUT/train_speed.txt" | tail -40
# the metrics survive a timeout: iterations/s and memory can be read from them even without benchmark.json
cp /tmp/tb/benchmark.json "$OUT/" 2>/dev/null; for a in maskrcnn cascade; do cp /tmp/tb/$a/tables/metrics.csv "$OUT/metrics_$a.csv" 2>/dev/null; done
timeout "$T_GV" python3 benchmarks/groupvit_speed.py --device cuda --batch_size 32 --iters 20 --warmup 3 --dtype fp16 --zs_images 4 2>&1 | tee "$OUT/groupvit_speed.txt" | tail -8
timeout "${T_GT:-300}" python3 benchmarks/groupvit_train_speed.py --device cuda --models full --batch_size 64 --amp fp16 --iters 10 --warmup 3 --losses ge --out "$OUT/groupvit_train_speed.json" 2>&1 | tee "$OUT/groupvit_train_speed.txt" | tail -14
