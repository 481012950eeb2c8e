#!/bin/bash
# One device call on a multi-GPU kind (nvidia-h100-x2 or larger): the
# training step's tokens/s on 1 GPU and on all GPUs, data-parallel, for the
# Qwen2.5-Coder-3B shape (BENCH_LAYERS of its 36 layers; 12 keeps the two
# compilations inside one call) with random weights, int8 base, sequence
# 3600. Needs bench/dp.test, built here with
#   GOOS=linux GOARCH=amd64 go test -c -tags gpubench -o bench/dp.test ./ml/train
# and carried into the call. Results: $OUT/dp.txt, $OUT/result-dataparallel.json.
set -u
export GOMLX_NO_AUTO_INSTALL=1 GOPJRT_CUDA_CHECKS=0 PIPE_GPU_BENCH=1
export GOMLX_BACKEND=${GOMLX_BACKEND:-xla:/opt/torch/.venv/lib/python3.12/site-packages/jax_plugins/xla_cuda13/xla_cuda_plugin.so}
# NVLink multicast stays off on shared hosts (see the device README).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}
n=$(nvidia-smi -L | wc -l)
export BENCH_OUT=/tmp/dp BENCH_LAYERS=${BENCH_LAYERS:-12} BENCH_SEQ=${BENCH_SEQ:-3600} BENCH_STEPS=${BENCH_STEPS:-6}
export BENCH_DEVICES=${BENCH_DEVICES:-1,$n}
mkdir -p "$BENCH_OUT" "$OUT"
nvidia-smi -L > "$OUT/gpus.txt"
timeout "${BENCH_TIMEOUT:-540}" ./bench/dp.test -test.run TestGPUDataParallel -test.v -test.timeout 0 > "$OUT/dp.txt" 2>&1
echo "rc=$?"
cp "$BENCH_OUT"/result-*.json "$OUT/" 2>/dev/null
grep -E "devices [0-9]+:|FAIL|panic|Error" "$OUT/dp.txt" | tail -c 4000
