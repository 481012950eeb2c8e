#!/bin/bash
# One device call: the training stage's step on the Qwen2.5-Coder-3B shape
# (bench/train.test, built with `go test -c -tags gpubench -o
# bench/train.test ./ml/train`) and the Hugging Face + peft baseline in the
# same call, then the TensorBoard and peft loading checks. Results go to
# $OUT: go.txt, hf.txt, results.json, check.txt, log.txt.
set -u
export GOMLX_NO_AUTO_INSTALL=1 GOPJRT_CUDA_CHECKS=0 PYTHONUNBUFFERED=1 PIPE_GPU_BENCH=1
OUT=${OUT:-/tmp/out}
W=/tmp/bench
mkdir -p "$W" "$OUT"
start=$(date +%s)
log() { echo "$(( $(date +%s) - start ))s $*" >> "$OUT/log.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/log.txt"
run_go() { # quant ckpt packed timeout
  log "go $*"
  BENCH_QUANT=$1 BENCH_CKPT=$2 BENCH_PACKED=$3 BENCH_OUT=$W timeout "$4" ./bench/train.test \
    -test.run TestGPUTrainStep -test.v -test.timeout 0 >> "$OUT/go.txt" 2>&1
  log "go $* rc=$?"
}
left() { echo $(( 540 - ($(date +%s) - start) )); }
# In order of importance; each bounded so the call ends inside 10 minutes
# with 60 s kept for the loading checks.
# On an H100 (2026-11-25) loading and quantising took 11 s and compiling
# the 3B step with gradient checkpointing about 145 s (int8 and NF4 alike);
# a step then takes about 0.4 s.
export BENCH_STEPS=6
run_go int8 1 0 210
log hf; timeout 80 python3 bench/hf_peft_baseline.py > "$OUT/hf.txt" 2>&1; log "hf rc=$?"
[ "$(left)" -gt 200 ] && run_go nf4 1 0 $(( $(left) - 60 < 210 ? $(left) - 60 : 210 ))
[ "$(left)" -gt 200 ] && run_go int8 1 1 $(( $(left) - 60 ))
cat "$W"/result-*.json > "$OUT/results.json" 2>/dev/null
log check; timeout 55 python3 bench/check_train_outputs.py "$W" > "$OUT/check.txt" 2>&1; log "check rc=$?"
# Short table last (the device tool returns the end of the output).
python3 - "$OUT" <<'PY'
import json, sys, glob, os, re
out = sys.argv[1]
hf = {}
for line in open(os.path.join(out, "hf.txt")):
    if line.startswith("{"):
        hf = json.loads(line).get("results", {})
print("HF+peft:", json.dumps(hf))
txt = open(os.path.join(out, "results.json")).read() if os.path.exists(os.path.join(out, "results.json")) else ""
for m in re.finditer(r"\{.*?\n\}", txt, re.S):
    r = json.loads(m.group(0))
    base = hf.get("seq3600_gc%d" % int(r["gradient_checkpointing"]), {})
    ratio = r["tokens_per_s_median"] / base["tok_per_s"] if base else float("nan")
    print("go %-5s ckpt=%-5s packed=%-5s %8.0f tok/s (x%.2f vs HF same gc) peak %.1f GiB (nvidia-smi) load %.0fs" % (
        r["quant"], r["gradient_checkpointing"], r["packed"], r["tokens_per_s_median"], ratio,
        r["peak_gpu_memory_gib_nvidia_smi"], r["load_quantise_s"]))
PY
tail -c 1500 "$OUT/check.txt"
