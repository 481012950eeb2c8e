#!/bin/bash
# One device call: the training stage's step on the Qwen2.5-Coder-3B shape
# (bench/train.test, built with `go test -c -tags gpubench -o
# bench/train.test ./ml/train`) and the Hugging Face + peft baseline in the
# same call, then the TensorBoard and peft loading checks. Results go to
# $OUT: go.txt, hf.txt, results.json, check.txt, log.txt, memreports.txt.
set -u
export GOMLX_NO_AUTO_INSTALL=1 GOPJRT_CUDA_CHECKS=0 PYTHONUNBUFFERED=1 PIPE_GPU_BENCH=1
OUT=${OUT:-/tmp/out}
W=/tmp/bench
mkdir -p "$W" "$OUT"
# A warm machine keeps /tmp between calls: drop the last call's results.
rm -rf "$W"/result-*.json "$W"/run-* "$W"/xla-*
start=$(date +%s)
log() { echo "$(( $(date +%s) - start ))s $*" >> "$OUT/log.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/log.txt"
run_go() { # quant ckpt packed layers dropout timeout
  log "go $*"
  # XLA's buffer assignment of the step program: its memory-usage report
  # names the buffers live at the peak.
  local name=$1-$2-$3-$4-$5 dump=$W/xla-$1-$2-$3-$4-$5
  XLA_FLAGS="--xla_dump_to=$dump --xla_dump_hlo_module_re=.*train.*" \
  BENCH_QUANT=$1 BENCH_CKPT=$2 BENCH_PACKED=$3 BENCH_LAYERS=$4 BENCH_DROPOUT=$5 BENCH_OUT=$W \
    timeout "$6" ./bench/train.test -test.run TestGPUTrainStep -test.v -test.timeout 0 >> "$OUT/go.txt" 2>&1
  log "go $* rc=$?"
  for f in "$dump"/*memory-usage-report*; do
    [ -f "$f" ] && { echo "=== $name $(basename "$f")"; head -c 1500000 "$f"; } >> "$OUT/memreports.txt"
  done
  local f; f=$(ls -S "$dump"/*after_optimizations.txt 2>/dev/null | head -1)
  [ -n "$f" ] || return 0
  # The first run's optimised step program, for reading offline.
  [ -f "$OUT/step-hlo.txt.gz" ] || gzip -c "$f" | head -c 15000000 > "$OUT/step-hlo.txt.gz"
  # What the schedule keeps alive at its peak (bench/hlo_peak.py).
  { echo "=== $name"; timeout 30 python3 bench/hlo_peak.py "$f" | head -22; } >> "$OUT/peak.txt" 2>&1
}
# BENCH_BUDGET: seconds the whole call may take (the device tool allows 600).
left() { echo $(( ${BENCH_BUDGET:-540} - ($(date +%s) - start) )); }
# BENCH_RUNS lists the runs in order: "hf" for the baseline, or
# quant:checkpointing:packed:layers:dropout for the Go step. The baseline
# goes first by default (about 35 s), so that it is never the run cut off.
# Each Go run gets at most BENCH_RUN_CAP seconds (default 360) and what is
# left of the budget less 60 s for the loading checks, and is skipped when
# that is under BENCH_MIN_RUN (default 240).
# On an H100: loading and quantising take 3 s (int8) to 10 s (NF4).
# Compiling the 36-layer step took 171 s on 2026-12-07 before the
# per-layer gradient fence and 265 s (int8) to 289 s (NF4) after it;
# with bf16 backward matmuls int8 took 206 s and NF4 over 310 s (cut
# off). A step then takes about 0.35 s. One call fits the baseline and
# one 36-layer run; give NF4 a call of its own (BENCH_RUN_CAP=520).
export BENCH_STEPS=${BENCH_STEPS:-6} BENCH_KLOG_V=1
for r in ${BENCH_RUNS:-hf int8:1:0:36:0.05 nf4:1:0:36:0.05}; do
  if [ "$r" = hf ]; then
    log hf; timeout 80 python3 bench/hf_peft_baseline.py > "$OUT/hf.txt" 2>&1; log "hf rc=$?"
    continue
  fi
  t=$(( $(left) - 60 )); [ "$t" -gt "${BENCH_RUN_CAP:-360}" ] && t=${BENCH_RUN_CAP:-360}
  [ "$t" -lt "${BENCH_MIN_RUN:-240}" ] && { log "skip $r ($t s left)"; continue; }
  run_go ${r//:/ } "$t"
done
cat "$W"/result-*.json > "$OUT/results.json" 2>/dev/null
log check; timeout 55 python3 bench/check_train_outputs.py "$W" > "$OUT/check.txt" 2>&1; log "check rc=$?"
# Short table last (the device tool returns the end of the output).
python3 - "$OUT" <<'PY'
import json, sys, glob, os, re
out = sys.argv[1]
hf = {}
for line in (open(os.path.join(out, "hf.txt")) if os.path.exists(os.path.join(out, "hf.txt")) else []):
    if line.startswith("{"):
        hf = json.loads(line).get("results", {})
print("HF+peft:", json.dumps(hf))
txt = open(os.path.join(out, "results.json")).read() if os.path.exists(os.path.join(out, "results.json")) else ""
for m in re.finditer(r"\{.*?\n\}", txt, re.S):
    r = json.loads(m.group(0))
    base = hf.get("seq3600_gc%d" % int(r["gradient_checkpointing"]), {})
    ratio = r["tokens_per_s_median"] / base["tok_per_s"] if base else float("nan")
    print("go %-5s ckpt=%-5s packed=%-5s layers=%d dropout=%g %8.0f tok/s (x%.2f vs HF same gc) peak %.1f GiB (nvidia-smi) load %.0fs" % (
        r["quant"], r["gradient_checkpointing"], r["packed"], r["layers"], r["dropout"], r["tokens_per_s_median"], ratio,
        r["peak_gpu_memory_gib_nvidia_smi"], r["load_quantise_s"]))
PY
tail -c 1500 "$OUT/check.txt"
cut -c1-160 "$OUT/peak.txt" 2>/dev/null | grep -A4 "^===" 
# XLA's buffer assignment of each step program (written before code
# generation, so present even when a run was cut off while compiling).
grep -h "^=== \|^Total bytes" "$OUT/memreports.txt" 2>/dev/null | cut -c1-120
# XLA's static memory needs of each compiled program (go-xla's compile log).
grep -h "Memory usage\|Compiled in" "$OUT/go.txt" | cut -c1-400
