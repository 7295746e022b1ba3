#!/usr/bin/env bash
# The checks to run when a session is lent a GPU (about 10 minutes in all), writing JSON like the CPU benchmarks:
#   bash benchmarks/gpu_check.sh            # run them (needs a CUDA GPU; make venv first)
#   bash benchmarks/gpu_check.sh --dry-run  # say what would run, run nothing
# 1. the demo on CUDA in mixed precision (bf16 where the GPU has it, else fp16): its choice by measuring (probes,
#    plan, training) within 1.5 minutes on ELPV; which candidates a GPU's minute and a half buys;
# 2. a training step of headstart against the plain d2l loop on the GPU (benchmarks/cpu_speed.py --device cuda);
# 3. the demo's fixed recipe as two processes (Accelerate, one GPU each) when there are two GPUs or more;
# 4. the demo's fixed recipe (mobilenet_v2, discriminative, 14 epochs) in one process, on the same split as 1;
# 5. the benchmark suite's --quick cells, into a results folder of their own (GPU cells are not CPU cells).
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PY=.venv/bin/python
OUT=benchmarks/results/gpu
RUNS=runs/gpu-check

FAILED=0
step() {  # a numbered step: printed, then run unless --dry-run; a failed step is reported and the next one runs
    echo "+ $*"
    if [[ $DRY == 0 ]]; then "$@" || { echo "FAILED (exit $?): $*"; FAILED=1; }; fi
}

if [[ $DRY == 0 ]]; then
    command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this machine has no CUDA GPU (use --dry-run)"; exit 1; }
    $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA device')"
    mkdir -p "$OUT" "$RUNS"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv"
fi
GPUS=$([[ $DRY == 0 ]] && nvidia-smi -L | wc -l || echo 2)

# 1. the demo: its metrics.json (wall time, images/s, accuracy, precision) and auto.json (the choice) are the record
step timeout 240 .venv/bin/headstart demo --out "$RUNS/demo" --minutes 1.5
step cp "$RUNS/demo/metrics.json" "$OUT/demo-metrics.json"
step cp "$RUNS/demo/auto.json" "$OUT/auto.json"
# 2. training steps: headstart (bf16/fp16, fp32, two groups frozen) against the d2l loop in float32, same batches
step timeout 120 $PY benchmarks/cpu_speed.py --parts throughput --device cuda --rounds 2 --steps 20 \
    --out "$OUT/gpu_speed.json"
# 3. two processes, one GPU each (only with two GPUs or more)
if (( GPUS >= 2 )); then
    step timeout 240 .venv/bin/accelerate launch --multi_gpu --num_processes 2 -m headstart demo --out "$RUNS/demo-2gpu" --minutes 0
    step cp "$RUNS/demo-2gpu/metrics.json" "$OUT/demo-2gpu-metrics.json"
fi
# 4. the fixed recipe the search is measured against, on the same split
step timeout 170 .venv/bin/headstart demo --out "$RUNS/demo-fixed" --minutes 0
step cp "$RUNS/demo-fixed/metrics.json" "$OUT/demo-fixed-metrics.json"
# 5. the suite's quick cells on the GPU (headstart's device is auto: CUDA here)
step timeout 240 $PY benchmarks/suite.py --quick --results "$OUT/suite"
echo "done: $OUT"
exit $FAILED
