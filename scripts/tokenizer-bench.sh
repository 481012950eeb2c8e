#!/usr/bin/env bash
# Benchmarks package tokenizer's encoding against the Python `tokenizers`
# package (PyPI) on the same 2 MiB of Go code and prose, in the same run, and
# prints both throughputs and their ratio. The Python package goes into a
# throwaway virtual environment (never into CI). Needs the tokenizer deps
# (scripts/tokenizers-lib.sh, scripts/qwen-tokenizer.sh) and python3.
#
#   scripts/tokenizer-bench.sh [python tokenizers version, default 0.23.2]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version="${1:-0.23.2}"
tokdir="${PIPE_TOKENIZER:-${PIPE_CACHE_DIR:-$HOME/.cache/pipe}/tokenizers/qwen2.5}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "tokenizer-bench: installing tokenizers==$version into a throwaway venv"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --disable-pip-version-check "tokenizers==$version"

cd "$root"
go test -c -o "$tmp/tokenizer.test" ./tokenizer
(cd tokenizer && "$tmp/tokenizer.test" -test.run '^TestBenchCorpus$' -corpus-out "$tmp/corpus.json")

echo "== Go (package tokenizer, github.com/daulet/tokenizers v1.22.1)"
(cd tokenizer && "$tmp/tokenizer.test" -test.run '^$' -test.bench 'Encode(Parallel)?$' -test.benchtime 3x) | tee "$tmp/go.txt"
echo "== Python"
"$tmp/venv/bin/python" tokenizer/testdata/bench_tokenizers.py --tokenizer "$tokdir/tokenizer.json" --corpus "$tmp/corpus.json" | tee "$tmp/py.txt"

# Ratios Go / Python: sequential against encode, parallel against encode_batch.
go_seq=$(awk '/^BenchmarkEncode-/ {for (i=1;i<=NF;i++) if ($(i+1)=="tokens/s") print $i}' "$tmp/go.txt")
go_par=$(awk '/^BenchmarkEncodeParallel-/ {for (i=1;i<=NF;i++) if ($(i+1)=="tokens/s") print $i}' "$tmp/go.txt")
go_tokens=$(awk '/^BenchmarkEncode-/ {for (i=1;i<=NF;i++) if ($(i+1)=="tokens") print $i}' "$tmp/go.txt")
py_seq=$(awk '$1=="encode" {print $6}' "$tmp/py.txt")
py_par=$(awk '$1=="encode_batch" {print $6}' "$tmp/py.txt")
py_tokens=$(awk '$1=="encode" {print $2}' "$tmp/py.txt")
echo "== Go/Python ratio: sequential $(awk -v a="$go_seq" -v b="$py_seq" 'BEGIN {printf "%.2f", a/b}')x, parallel $(awk -v a="$go_par" -v b="$py_par" 'BEGIN {printf "%.2f", a/b}')x"
if [[ "$go_tokens" != "$py_tokens" ]]; then
	echo "tokenizer-bench: token counts differ: Go $go_tokens, Python $py_tokens" >&2
	exit 1
fi
echo "== token counts agree: $go_tokens"
