#!/usr/bin/env python3
"""What is live at the peak of a scheduled XLA program.

Reads an HLO module dumped after optimisations (XLA_FLAGS=--xla_dump_to=DIR
gives *after_optimizations.txt; a .gz file is read as is), walks its ENTRY
computation in schedule order and prints the peak of the buffers it
defines (parameters, constants and aliasing ops such as bitcast and
get-tuple-element excluded) and what is live there, grouped by shape.

It is an estimate: XLA's buffer assignment also reuses operand buffers in
place, so its own figure (the memory-usage report) is somewhat lower. It
answers the question the report cannot: which instruction keeps a buffer
alive, and until when.

    python3 bench/hlo_peak.py module.after_optimizations.txt[.gz] [shape-prefix]
"""
import collections
import gzip
import re
import signal
import sys

DTYPE_BYTES = {'bf16': 2, 'f16': 2, 'f32': 4, 'f64': 8, 's8': 1, 'u8': 1, 'pred': 1,
               's16': 2, 'u16': 2, 's32': 4, 'u32': 4, 's64': 8, 'u64': 8}
SHAPE = re.compile(r'\b(' + '|'.join(DTYPE_BYTES) + r')\[([0-9,]*)\]')
INST = re.compile(r'^(?:ROOT )?%?([\w.\-]+) = (.*)$')
ALIASING = {'get-tuple-element', 'bitcast', 'tuple', 'parameter', 'constant', 'opt-barrier'}


def nbytes(typ):
    total = 0
    for dt, dims in SHAPE.findall(typ):
        n = 1
        for d in filter(None, dims.split(',')):
            n *= int(d)
        total += n * DTYPE_BYTES[dt]
    return total


def entry(path):
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rt') as f:
        inside = False
        for line in f:
            if line.startswith('ENTRY'):
                inside = True
            elif inside and line.startswith('}'):
                return
            elif inside:
                yield line.strip()


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # | head
    path = sys.argv[1]
    detail = sys.argv[2] if len(sys.argv) > 2 else None
    insts = []
    for line in entry(path):
        m = INST.match(line)
        if not m:
            continue
        name, rest = m.groups()
        op = re.search(r'\s([a-z][a-z\-]*)\(', rest)
        typ = rest[:op.start()] if op else rest
        args = rest[op.end():] if op else ''
        args = args.split('calls=')[0].split('to_apply=')[0]
        insts.append((name, op.group(1) if op else '?', typ, re.findall(r'%([\w.\-]+)', args)))
    index = {n: i for i, (n, _, _, _) in enumerate(insts)}
    last = {}
    for i, (_, _, _, ops) in enumerate(insts):
        for o in ops:
            if o in index:
                last[o] = i
    dies = collections.defaultdict(list)
    for n, i in last.items():
        dies[i].append(n)
    size, live, cur, peak, at = {}, 0, {}, 0, 0
    for i, (n, op, typ, _) in enumerate(insts):
        size[n] = 0 if op in ALIASING else nbytes(typ)
        cur[n] = size[n]
        live += size[n]
        if live > peak:
            peak, at = live, i
        for d in dies[i]:
            live -= cur.pop(d, 0)
        if n not in last and i != len(insts) - 1:
            live -= cur.pop(n, 0)
    print('%d instructions; peak %.2f GiB of buffers defined by the program at #%d (%s)' %
          (len(insts), peak / 2**30, at, insts[at][0]))
    alive = [(size[n], n, insts[i][2], i, last.get(n, i)) for n, i in index.items()
             if size[n] and i <= at <= last.get(n, i)]
    by_type, count = collections.Counter(), collections.Counter()
    for s, _, typ, _, _ in alive:
        key = typ[:70]
        by_type[key] += s
        count[key] += 1
    for key, s in by_type.most_common(12):
        print('%9.1f MiB %4d x %s' % (s / 2**20, count[key], key))
    print('largest live at the peak (defined at #, last used at #):')
    for s, n, typ, i, j in sorted(alive, reverse=True)[:12]:
        print('%9.1f MiB %-36s #%-6d #%-6d %s' % (s / 2**20, n, i, j, insts[j][0]))
    if detail:
        for s, n, typ, i, j in sorted(alive, reverse=True):
            if typ.startswith(detail):
                print('%9.1f MiB %-36s #%-6d #%-6d %s' % (s / 2**20, n, i, j, insts[j][0]))


if __name__ == '__main__':
    main()
