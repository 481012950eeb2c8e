#!/usr/bin/env bash
# Side-by-side timing of pipe and DVC on the same pipeline, in the same run:
# one stage that maps every file of a 10,000-file folder to a line
# ("<lines> <path>"), plus a second stage that totals them.
#
#   bench/dvc/run.sh [files, default 10000] [dvc version, default 3.63.0]
#
# DVC is installed from PyPI into a throwaway virtual environment (never by
# CI). Both tools get an identical copy of the data. Measured, each as the
# median of several repetitions: the first run, a no-op re-run, and a re-run
# after one new file arrives. pipe uses the command_each kind (one `wc -l`
# per file, cached per file); DVC re-runs its whole stage (one `wc -l` over
# all files), which is the best DVC can do (its issue #331).
set -euo pipefail

n="${1:-10000}"
dvc_version="${2:-3.63.0}"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# BENCH_VENV names an existing venv that already has DVC (to rerun quickly).
venv="${BENCH_VENV:-$tmp/venv}"
if [[ ! -x "$venv/bin/dvc" ]]; then
	echo "bench: installing dvc==$dvc_version into a throwaway venv" >&2
	python3 -m venv "$venv"
	# pathspec 1.x removed a name DVC 3.63 imports.
	"$venv/bin/pip" install --quiet --disable-pip-version-check "dvc==$dvc_version" "pathspec==0.12.1" >&2
fi
dvc="$venv/bin/dvc"

echo "bench: building pipe" >&2
(cd "$root" && go build -o "$tmp/pipe" ./cmd/pipe)
pipe="$tmp/pipe"

# Identical data for both.
mkdir -p "$tmp/data"
python3 - "$tmp/data" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "%03d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.txt" % i), "w") as f:
        f.write("line one of %d\nline two\n" % i)
PY
mkdir "$tmp/pipe-proj" "$tmp/dvc-proj"
cp -r "$tmp/data" "$tmp/pipe-proj/data"
cp -r "$tmp/data" "$tmp/dvc-proj/data"

cat > "$tmp/pipe-proj/pipeline.hcl" <<'HCL'
stage "command_each" "count" {
  program = "wc"
  args    = ["-l", "{key}"]
  inputs  = ["data"]
}

stage "command" "total" {
  program = "sh"
  args    = ["-c", "awk '{ s += $1 } END { print s }' \"$1\" > \"$2\"", "total", stage.command_each.count.out, "{out.total}"]
  inputs  = [stage.command_each.count.out]
  outputs = { total = "file" }
}
HCL

cat > "$tmp/dvc-proj/count.sh" <<'SH'
#!/bin/sh
# One line per file, like pipe's command_each stage.
find data -type f | LC_ALL=C sort | while read -r f; do wc -l "$f"; done > counts.txt
SH
cat > "$tmp/dvc-proj/dvc.yaml" <<'YAML'
stages:
  count:
    cmd: sh count.sh
    deps:
      - data
      - count.sh
    outs:
      - counts.txt
  total:
    cmd: awk '{ s += $1 } END { print s }' counts.txt > total.txt
    deps:
      - counts.txt
    outs:
      - total.txt
YAML
(cd "$tmp/dvc-proj" && "$dvc" init --no-scm -q && "$dvc" config core.analytics false && "$dvc" config core.check_update false)
export DVC_NO_ANALYTICS=1

# timeit <dir> <cmd...>: seconds taken by the command.
timeit() {
	local dir=$1
	shift
	python3 - "$dir" "$@" <<'PY'
import subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[2:], cwd=sys.argv[1], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("%.4f" % (time.perf_counter() - t))
PY
}
median() { python3 -c 'import statistics,sys; print("%.4f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

first_pipe=$(timeit "$tmp/pipe-proj" "$pipe" run)
first_dvc=$(timeit "$tmp/dvc-proj" "$dvc" repro -q)

reps=11
# Each tool's repetitions run as a block, so that one tool's background
# work (DVC forks helpers) does not land in the other's timings.
np=(); nd=()
for _ in $(seq $reps); do np+=("$(timeit "$tmp/pipe-proj" "$pipe" run)"); done
for _ in $(seq $reps); do nd+=("$(timeit "$tmp/dvc-proj" "$dvc" repro -q)"); done
noop_pipe=$(median "${np[@]}")
noop_dvc=$(median "${nd[@]}")

op=(); od=()
for i in $(seq 5); do
	echo "new $i" > "$tmp/pipe-proj/data/new$i.txt"
	op+=("$(timeit "$tmp/pipe-proj" "$pipe" run)")
done
for i in $(seq 5); do
	echo "new $i" > "$tmp/dvc-proj/data/new$i.txt"
	od+=("$(timeit "$tmp/dvc-proj" "$dvc" repro -q)")
done
one_pipe=$(median "${op[@]}")
one_dvc=$(median "${od[@]}")

# Both computed the same totals.
tp=$(cat "$tmp/pipe-proj/.pipe/out/total/total")
td=$(cat "$tmp/dvc-proj/total.txt")
[[ "$tp" == "$td" ]] || { echo "bench: totals differ: pipe $tp, dvc $td" >&2; exit 1; }

ratio() { python3 -c "print('%.0f' % (float('$1') / float('$2')))"; }
echo
echo "files: $n (+5 new), dvc $("$dvc" --version), $(nproc) CPUs, total lines $tp"
printf '%-22s %10s %10s %8s\n' case "pipe (s)" "dvc (s)" "dvc/pipe"
printf '%-22s %10s %10s %8s\n' "first run" "$first_pipe" "$first_dvc" "$(ratio "$first_dvc" "$first_pipe")x"
printf '%-22s %10s %10s %8s\n' "no-op re-run" "$noop_pipe" "$noop_dvc" "$(ratio "$noop_dvc" "$noop_pipe")x"
printf '%-22s %10s %10s %8s\n' "one new file" "$one_pipe" "$one_dvc" "$(ratio "$one_dvc" "$one_pipe")x"
