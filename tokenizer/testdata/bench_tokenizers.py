#!/usr/bin/env python3
"""Python side of the tokenizer benchmark (scripts/tokenizer-bench.sh).

Encodes the corpus that `go test -run TestBenchCorpus -corpus-out FILE`
wrote (a JSON list of documents) with the `tokenizers` package from PyPI
and the same tokenizer.json, the way package tokenizer's benchmarks do:
one document after another (Tokenizer.encode, like BenchmarkEncode) and all
at once (Tokenizer.encode_batch, which spreads documents over all cores,
like BenchmarkEncodeParallel). Prints tokens/s and the token count, which
must equal Go's.
"""

import argparse
import json
import os
import time

import tokenizers


def best_of(runs, fn):
    """Returns the fastest of runs timed calls of fn and its result."""
    best, result = None, None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json")
    ap.add_argument("--corpus", required=True, help="JSON list of documents")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    with open(args.corpus, encoding="utf-8") as f:
        docs = json.load(f)
    size = sum(len(d.encode()) for d in docs)
    tok = tokenizers.Tokenizer.from_file(args.tokenizer)
    tok.encode(docs[0], add_special_tokens=False)  # warm up

    def sequential():
        return sum(len(tok.encode(d, add_special_tokens=False).ids) for d in docs)

    def batch():
        return sum(len(e.ids) for e in tok.encode_batch(docs, add_special_tokens=False))

    print(f"python tokenizers {tokenizers.__version__}, {len(docs)} documents, {size} bytes, {os.cpu_count()} CPUs")
    for name, fn in (("encode", sequential), ("encode_batch", batch)):
        dt, n = best_of(args.runs, fn)
        print(f"{name:14s} {n} tokens  {dt:8.3f} s  {n / dt:12.0f} tokens/s  {size / dt / 1e6:6.2f} MB/s")


if __name__ == "__main__":
    main()
