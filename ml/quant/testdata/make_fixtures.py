#!/usr/bin/env python3
"""Writes quant_fixtures.safetensors: int8 and NF4 (with and without double
quantisation) codes, scales and dequantised values computed with numpy from
the published schemes, for ml/quant's Go tests.

The formulas follow bitsandbytes (csrc/kernels.cu kQuantizeBlockwise and
dQuantizeNF4, bitsandbytes/backends/default/ops.py, functional.py
quantize_4bit / quantize_blockwise / create_dynamic_map,
int8_vectorwise_quant). bitsandbytes itself is not used: its quantisation
kernels need torch (and a GPU for the CUDA path), which this machine lacks.

Run: python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy &&
/tmp/venv/bin/python make_fixtures.py  (from this folder). The output is
deterministic for a given numpy version.
"""
import json
import struct
from fractions import Fraction

import numpy as np

f32 = np.float32

NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=f32)

# The thresholds of dQuantizeNF4 in csrc/kernels.cu, as the float literals
# the CUDA compiler rounds directly from decimal to float32.
CUDA_THRESHOLD_LITERALS = [
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
    "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
    "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
    "0.5016634166240692", "0.6427869200706482", "0.8614784181118011"]


def f32_from_decimal(s):
    """Rounds a decimal string to the nearest float32 directly (going
    through float64 first can round twice and land one ulp off)."""
    exact = Fraction(s)
    c = f32(float(exact))
    best = c
    for cand in (np.nextafter(c, f32(-np.inf)), np.nextafter(c, f32(np.inf))):
        if abs(Fraction(float(cand)) - exact) < abs(Fraction(float(best)) - exact):
            best = cand
    return best


CUDA_THRESHOLDS = np.array([f32_from_decimal(s) for s in CUDA_THRESHOLD_LITERALS], dtype=f32)

# bitsandbytes' pure-PyTorch backend bucketizes with the float32 midpoints
# of the code instead. They are within one ulp of the CUDA thresholds but
# not equal for 4 of the 15, so the two paths disagree for a normalised
# value exactly on one of those; the CUDA kernel (QLoRA's path) is followed.
MIDPOINTS = ((NF4[:-1] + NF4[1:]) / f32(2)).astype(f32)
assert np.all(np.abs(MIDPOINTS.view(np.int32) - CUDA_THRESHOLDS.view(np.int32)) <= 1)


def dynamic_map():
    """create_dynamic_map(signed=True, 7, 8), each entry computed in float64
    and rounded to float32 once."""
    data = []
    for i in range(7):
        n = 2 ** i + 1
        b = np.linspace(0.1, 1.0, n)  # float64
        means = (b[:-1] + b[1:]) / 2.0
        data += list(10.0 ** (i - 6) * means)
        data += list(-(10.0 ** (i - 6)) * means)
    data += [0.0, 1.0]
    assert len(data) == 256
    return np.array(sorted(data), dtype=np.float64).astype(f32)


def bucketize(x, bounds):
    # torch.bucketize(x, bounds, right=False): first i with bounds[i] >= x.
    return np.searchsorted(bounds, x, side="left")


def quantize_int8(w):
    absmax = np.abs(w).max(axis=1).astype(f32)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (f32(127) / absmax).astype(f32)
        codes = np.rint((w * s[:, None]).astype(f32))  # rint: half to even
    codes[absmax == 0] = 0
    deq = (codes.astype(f32) * absmax[:, None]).astype(f32) * f32(7.874015718698502e-3)
    return codes.astype(np.int8), absmax, deq.astype(f32)


def quantize_nf4(w, double_quant):
    flat = w.reshape(-1)
    blocks = flat.reshape(-1, 64)
    absmax = np.abs(blocks).max(axis=1).astype(f32)
    inv = (f32(1) / np.maximum(absmax, f32(1e-38))).astype(f32)
    x = np.clip((blocks * inv[:, None]).astype(f32), -1, 1).reshape(-1)
    # dQuantizeNF4: the number of thresholds x exceeds (x > t).
    codes = bucketize(x, CUDA_THRESHOLDS).astype(np.uint8)
    packed = (codes[0::2] << 4) | codes[1::2]
    out = {"packed": packed.astype(np.uint8)}
    if not double_quant:
        scales = absmax
        out["absmax"] = absmax
    else:
        offset = f32(absmax.astype(np.float64).mean())
        centred = (absmax - offset).astype(f32)
        dm = dynamic_map()
        mids = ((dm[:-1] + dm[1:]) / f32(2)).astype(f32)
        nb2 = (len(centred) + 255) // 256
        qabs = np.zeros(len(centred), dtype=np.uint8)
        absmax2 = np.zeros(nb2, dtype=f32)
        for b in range(nb2):
            blk = centred[b * 256:(b + 1) * 256]
            m = f32(np.abs(blk).max())
            absmax2[b] = m
            inv2 = f32(f32(1) / max(m, f32(1e-38)))
            qabs[b * 256:(b + 1) * 256] = bucketize(np.clip((blk * inv2).astype(f32), -1, 1), mids)
        scales = ((dm[qabs] * absmax2[np.arange(len(qabs)) // 256]).astype(f32) + offset).astype(f32)
        out.update(qabsmax=qabs, absmax2=absmax2, offset=np.array(offset, dtype=f32))
    out["scales"] = scales
    out["deq"] = (NF4[codes].reshape(-1, 64) * scales[:, None]).astype(f32).reshape(w.shape)
    return out


def bf16_round(a):
    """Rounds float32 values to bfloat16 (nearest even), kept as float32."""
    b = a.astype(f32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16 << 16
    return b.astype(np.uint32).view(f32)


def rel_err(x, w, deq):
    y = x.astype(np.float64) @ w.astype(np.float64).T
    yq = x.astype(np.float64) @ deq.astype(np.float64).T
    return np.linalg.norm(y - yq) / np.linalg.norm(y)


def main():
    rng = np.random.default_rng(20250101)
    cases = {
        "normal": bf16_round(rng.normal(0, 0.02, (64, 128)).astype(f32)),
        "dq3": bf16_round(rng.normal(0, 0.05, (128, 160)).astype(f32)),
    }
    # Edge cases: an all-zero row (int8) and block (NF4), outliers, a value
    # exactly on every NF4 threshold (block absmax 1, so x = t), ties for
    # int8 rounding (127·w/absmax = k + 0.5).
    edge = bf16_round(rng.normal(0, 1, (24, 256)).astype(f32))
    edge[3, :] = 0
    edge[5, 64:128] = 0
    edge[7, 0] = 1.0
    edge[7, 1:16] = CUDA_THRESHOLDS
    edge[7, 16:64] = np.clip(edge[7, 16:64], -0.9, 0.9)
    edge[9, 10] = 40.0
    edge[11, :] = 0
    edge[11, 0] = 127.0
    edge[11, 1:8] = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5]
    cases["edge"] = edge

    tensors = {}
    meta = {}
    for name, w in cases.items():
        x = rng.normal(0, 1, (8, w.shape[1])).astype(f32)
        tensors[f"{name}.w"] = w
        tensors[f"{name}.x"] = x
        codes, absmax, deq = quantize_int8(w)
        tensors[f"{name}.int8.codes"] = codes
        tensors[f"{name}.int8.absmax"] = absmax
        tensors[f"{name}.int8.deq"] = deq
        meta[f"{name}.int8.relerr"] = repr(float(rel_err(x, w, deq)))
        for dq in (False, True):
            tag = "nf4dq" if dq else "nf4"
            out = quantize_nf4(w, dq)
            for k, v in out.items():
                tensors[f"{name}.{tag}.{k}"] = np.asarray(v)
            meta[f"{name}.{tag}.relerr"] = repr(float(rel_err(x, w, out["deq"])))
    tensors["dynamic_map"] = dynamic_map()
    write_safetensors("quant_fixtures.safetensors", tensors, meta)


DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8"}


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        data = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-(len(h) + 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main()
