#!/usr/bin/env bash
# The benchmark suite on one CUDA GPU, as reported in the README ("Speed and memory", GPU rows).
#   bash scripts/gpu_bench.sh            # writes BENCH_DIR (default runs/gpu_bench): logs and JSON
# Needs glomtext importable (pip install -e . or PYTHONPATH=.) and a CUDA build of torch. About 4 minutes
# on one H100 or H200.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR="${BENCH_DIR:-runs/gpu_bench}"
mkdir -p "$DIR"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
run() {  # run NAME LIMIT_S COMMAND...: one benchmark, its output in DIR/NAME.log; a failure does not stop the rest
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" 2>&1 | tee "$DIR/$name.log" | sed '/^{/,$d'  # the JSON dump stays in the log
  echo "   ($name: exit ${PIPESTATUS[0]})"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
run train 200 python benchmarks/bench_train.py --device cuda --dtype bf16 --json "$DIR/train.json"
run islands 150 python benchmarks/bench_islands.py --device cuda --sentences 4096 --readout-batch-size 64 512 1024 2048
run islands_nofreeze 90 python benchmarks/bench_islands.py --device cuda --sentences 4096 --readout-batch-size 64 512 1024 \
  --no-gc-freeze
run islands_b256 90 python benchmarks/bench_islands.py --device cuda --sentences 4096 --batch-size 256 \
  --readout-batch-size 256 512 1024 2048
run islands_wide 90 python benchmarks/bench_islands.py --device cuda --sentences 4096 --hidden 384 --levels 6 \
  --iterations 10 --batch-size 128 --readout-batch-size 128 512 1024
run train_compiled 200 python benchmarks/bench_train.py --device cuda --dtype bf16 --sections utilisation --compile \
  --json "$DIR/train_compiled.json"
