package quant

import (
	"fmt"
	"math"
	"sort"
)

// NF4Code holds the 16 NormalFloat4 values of QLoRA, indexed by code.
var NF4Code = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// nf4Thresholds are the decision thresholds of bitsandbytes' dQuantizeNF4
// (csrc/kernels.cu), its float literals rounded to float32 as the CUDA
// compiler rounds them: a normalised value x gets the number of thresholds
// it exceeds (x > t) as its code, so a value exactly on a threshold takes
// the lower code. They are the midpoints of consecutive NF4Code values up to
// one float32 ulp (thresholds 0, 8, 12 and 14 are one ulp off the float32
// midpoint that bitsandbytes' pure-PyTorch backend bucketizes with, so that
// backend codes a value lying exactly there differently; QLoRA's CUDA path
// is followed).
var nf4Thresholds = [15]float32{
	-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
	-0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
	0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
	0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
}

// Block sizes of NF4 and of the double quantisation of its scales.
const (
	NF4BlockSize   = 64
	DQBlockSize    = 256
	minAbsmaxScale = 1e-38 // bitsandbytes' clamp before 1/absmax
)

// NF4 is a [Rows, Cols] weight in NF4 with block-wise scales.
type NF4 struct {
	Rows, Cols int
	// Packed holds two 4-bit codes a byte, the first (even index, in
	// row-major order) in the high nibble: Rows×Cols/2 bytes.
	Packed []byte
	// Absmax holds one float32 scale per 64-value block when the scales
	// are not double-quantised; nil otherwise.
	Absmax []float32
	// With double quantisation, block b's scale is
	// DynamicMap[QAbsmax[b]]·Absmax2[b/256] + Offset.
	QAbsmax []uint8
	Absmax2 []float32
	Offset  float32
}

// DoubleQuant reports whether the block scales are double-quantised.
func (q *NF4) DoubleQuant() bool { return q.Absmax == nil }

// NumBlocks returns the number of 64-value blocks.
func (q *NF4) NumBlocks() int { return q.Rows * q.Cols / NF4BlockSize }

// Bytes returns the size of the quantised form.
func (q *NF4) Bytes() int64 {
	return int64(len(q.Packed)) + 4*int64(len(q.Absmax)) + int64(len(q.QAbsmax)) + 4*int64(len(q.Absmax2)) + 4
}

// quantizeNF4Value returns the code of a value normalised to [-1, 1].
func quantizeNF4Value(x float32) byte {
	var c byte
	for _, t := range nf4Thresholds {
		if x > t {
			c++
		}
	}
	return c
}

// QuantizeNF4 quantises a row-major [rows, cols] weight (the values as
// float32, e.g. widened from bf16) as bitsandbytes' quantize_4bit with
// blocksize 64 and quant_type "nf4" does, and, when doubleQuant is set,
// double-quantises the scales as its compress_statistics=True does. The
// number of weights must be a multiple of 64.
//
// Within a block, x = w·(1/absmax) in float32, as in kQuantizeBlockwise. Two
// details where bitsandbytes' CUDA kernel is not well defined follow its
// pure-PyTorch backend instead: an all-zero block (absmax clamped to 1e-38,
// so its codes are 7, the code of 0.0, where CUDA computes 0·inf) and the
// mean subtracted before double quantisation (summed in float64 here; torch
// sums in float32 in a device-dependent order, which can differ in the last
// bit).
func QuantizeNF4(w []float32, rows, cols int, doubleQuant bool) (*NF4, error) {
	n := rows * cols
	if rows <= 0 || cols <= 0 || len(w) != n {
		return nil, fmt.Errorf("nf4: %d values do not make a [%d, %d] weight", len(w), rows, cols)
	}
	if n%NF4BlockSize != 0 {
		return nil, fmt.Errorf("nf4: a [%d, %d] weight has %d values, not a multiple of the block size %d", rows, cols, n, NF4BlockSize)
	}
	nb := n / NF4BlockSize
	q := &NF4{Rows: rows, Cols: cols, Packed: make([]byte, n/2)}
	absmax := make([]float32, nb)
	for b := range nb {
		block := w[b*NF4BlockSize : (b+1)*NF4BlockSize]
		var m float32
		for _, v := range block {
			m = max(m, float32(math.Abs(float64(v))))
		}
		absmax[b] = m
		inv := 1 / max(m, minAbsmaxScale)
		for i := 0; i < NF4BlockSize; i += 2 {
			hi := quantizeNF4Value(clamp1(block[i] * inv))
			lo := quantizeNF4Value(clamp1(block[i+1] * inv))
			q.Packed[(b*NF4BlockSize+i)/2] = hi<<4 | lo
		}
	}
	if !doubleQuant {
		q.Absmax = absmax
		return q, nil
	}
	var sum float64
	for _, v := range absmax {
		sum += float64(v)
	}
	q.Offset = float32(sum / float64(nb))
	centred := make([]float32, nb)
	for i, v := range absmax {
		centred[i] = v - q.Offset
	}
	q.QAbsmax, q.Absmax2 = quantizeBlockwise8(centred, DQBlockSize)
	return q, nil
}

func clamp1(x float32) float32 { return min(max(x, -1), 1) }

// quantizeBlockwise8 is bitsandbytes' quantize_blockwise with the signed
// dynamic map: absmax per block (the last block may be partial), then each
// value normalised and mapped to the nearest map entry by the float32
// midpoints between consecutive entries (a value on a midpoint takes the
// lower entry, as torch.bucketize does).
func quantizeBlockwise8(v []float32, blockSize int) ([]uint8, []float32) {
	dm := DynamicMap()
	var mids [255]float32
	for i := range mids {
		mids[i] = (dm[i] + dm[i+1]) / 2
	}
	codes := make([]uint8, len(v))
	nb := (len(v) + blockSize - 1) / blockSize
	absmax := make([]float32, nb)
	for b := range nb {
		block := v[b*blockSize : min((b+1)*blockSize, len(v))]
		var m float32
		for _, x := range block {
			m = max(m, float32(math.Abs(float64(x))))
		}
		absmax[b] = m
		inv := 1 / max(m, minAbsmaxScale)
		for i, x := range block {
			s := clamp1(x * inv)
			codes[b*blockSize+i] = uint8(sort.Search(len(mids), func(j int) bool { return mids[j] >= s }))
		}
	}
	return codes, absmax
}

// DynamicMap returns bitsandbytes' signed dynamic 8-bit map,
// create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for
// i in 0..6, the means of adjacent points of linspace(0.1, 1, 2^i+1) scaled
// by ±10^(i-6), plus 0 and 1, sorted. Each entry is computed in float64 and
// rounded to float32 once. (bitsandbytes builds it with torch float32
// arithmetic whose linspace kernel differs between CPU vector widths, so
// individual entries may differ from a given torch build in the last bit,
// a relative 6e-8.)
func DynamicMap() [256]float32 {
	var data []float64
	for i := range 7 {
		n := 1<<i + 1
		scale := math.Pow(10, float64(i-6))
		for k := range n - 1 {
			a := 0.1 + 0.9*float64(k)/float64(n-1)
			b := 0.1 + 0.9*float64(k+1)/float64(n-1)
			m := (a + b) / 2
			data = append(data, scale*m, -scale*m)
		}
	}
	data = append(data, 0, 1)
	sort.Float64s(data)
	var out [256]float32
	for i, v := range data {
		out[i] = float32(v)
	}
	return out
}

// Scales returns the float32 scale of every 64-value block, decoding the
// double quantisation as bitsandbytes' dequantize_4bit does
// (map[q]·absmax2, then + offset, in float32).
func (q *NF4) Scales() []float32 {
	if !q.DoubleQuant() {
		return q.Absmax
	}
	dm := DynamicMap()
	out := make([]float32, len(q.QAbsmax))
	for b, c := range q.QAbsmax {
		out[b] = dm[c]*q.Absmax2[b/DQBlockSize] + q.Offset
	}
	return out
}

// Codes returns the unpacked 4-bit codes, one a byte.
func (q *NF4) Codes() []byte {
	out := make([]byte, 2*len(q.Packed))
	for i, p := range q.Packed {
		out[2*i], out[2*i+1] = p>>4, p&0x0f
	}
	return out
}

// Dequantize returns the weight as float32: NF4Code[code]·scale.
func (q *NF4) Dequantize() []float32 {
	scales := q.Scales()
	codes := q.Codes()
	out := make([]float32, len(codes))
	for i, c := range codes {
		out[i] = NF4Code[c] * scales[i/NF4BlockSize]
	}
	return out
}
