package quant

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// Part is one tensor of a quantised weight's device form.
type Part struct {
	// Suffix is appended to the weight's name (after a dot) in files and
	// variable names: "codes", "absmax", "packed", "qabsmax", "absmax2",
	// "offset".
	Suffix string
	Tensor *tensors.Tensor
}

// Parts returns the tensors that represent the weight on the device, to be
// stored as (frozen) variables and handed back to Dequantize by suffix:
//
//	int8: codes Int8[rows, cols], absmax Float32[rows]
//	nf4:  packed Uint8[rows, cols/2], qabsmax Uint8[blocks],
//	      absmax2 Float32[ceil(blocks/256)], offset Float32[]
//	      (or absmax Float32[blocks] without double quantisation)
func (w *Weight) Parts() []Part {
	if q := w.Int8; q != nil {
		return []Part{
			{"codes", tensors.FromFlatDataAndDimensions(q.Codes, q.Rows, q.Cols)},
			{"absmax", tensors.FromFlatDataAndDimensions(q.Absmax, q.Rows)},
		}
	}
	q := w.NF4
	parts := []Part{{"packed", tensors.FromFlatDataAndDimensions(q.Packed, q.Rows, q.Cols/2)}}
	if !q.DoubleQuant() {
		return append(parts, Part{"absmax", tensors.FromFlatDataAndDimensions(q.Absmax, len(q.Absmax))})
	}
	return append(parts,
		Part{"qabsmax", tensors.FromFlatDataAndDimensions(q.QAbsmax, len(q.QAbsmax))},
		Part{"absmax2", tensors.FromFlatDataAndDimensions(q.Absmax2, len(q.Absmax2))},
		Part{"offset", tensors.FromScalar(q.Offset)},
	)
}

// Dequantize builds, inside a graph, the [rows, cols] weight of the given
// dtype (typically bfloat16 or float32) from the nodes of its Parts, keyed
// by suffix. The arithmetic is float32, as in bitsandbytes, and the result
// is converted to dtype last, so XLA can fuse the whole dequantisation into
// the consumer of the weight.
func Dequantize(scheme Scheme, parts map[string]*G.Node, dtype dtypes.DType) (*G.Node, error) {
	need := func(names ...string) error {
		for _, n := range names {
			if parts[n] == nil {
				return fmt.Errorf("quant: %s weight lacks its %q part", scheme, n)
			}
		}
		return nil
	}
	switch scheme {
	case SchemeI8:
		if err := need("codes", "absmax"); err != nil {
			return nil, err
		}
		return DequantizeInt8(parts["codes"], parts["absmax"], dtype), nil
	case SchemeNF:
		if err := need("packed"); err != nil {
			return nil, err
		}
		var scales *G.Node
		if parts["absmax"] != nil {
			scales = parts["absmax"]
		} else {
			if err := need("qabsmax", "absmax2", "offset"); err != nil {
				return nil, err
			}
			scales = NF4Scales(parts["qabsmax"], parts["absmax2"], parts["offset"])
		}
		return DequantizeNF4(parts["packed"], scales, dtype), nil
	}
	return nil, fmt.Errorf("quant: no dequantisation for scheme %q", scheme)
}

// DequantizeInt8 returns codes (Int8[rows, cols]) · absmax (Float32[rows])
// / 127 as dtype.
func DequantizeInt8(codes, absmax *G.Node, dtype dtypes.DType) *G.Node {
	// (code·absmax)·(1/127), in bitsandbytes' order, so the result is the
	// same float32 as Int8.Dequantize.
	w := G.Mul(G.ConvertDType(codes, dtypes.Float32), G.InsertAxes(absmax, -1))
	return G.ConvertDType(G.MulScalar(w, float32(7.874015718698502e-3)), dtype)
}

// DequantizeNF4 unpacks packed (Uint8[rows, cols/2], the first code of a
// pair in the high nibble) with a shift and a mask, looks the codes up in
// the 16-value NF4 table with Gather, and multiplies each 64-value block by
// its scale (Float32[rows·cols/64]); the result is a [rows, cols] dtype
// weight.
func DequantizeNF4(packed, scales *G.Node, dtype dtypes.DType) *G.Node {
	g := packed.Graph()
	dims := packed.Shape().Dimensions
	rows, cols := dims[0], 2*dims[1]
	n := rows * cols
	hi := G.BitwiseShiftRightLogicalScalar(packed, 4)
	lo := G.BitwiseAnd(packed, G.Scalar(g, dtypes.Uint8, 0x0f))
	codes := G.Reshape(G.Stack([]*G.Node{hi, lo}, -1), n)
	codes = G.ConvertDType(codes, dtypes.Int32)
	table := G.Const(g, NF4Code[:])
	vals := G.Gather(table, G.InsertAxes(codes, -1)) // [n]
	w := G.Mul(G.Reshape(vals, n/NF4BlockSize, NF4BlockSize), G.InsertAxes(scales, -1))
	return G.ConvertDType(G.Reshape(w, rows, cols), dtype)
}

// NF4Scales decodes double-quantised block scales inside a graph:
// DynamicMap[qabsmax]·absmax2[block/256] + offset, in float32.
func NF4Scales(qabsmax, absmax2, offset *G.Node) *G.Node {
	g := qabsmax.Graph()
	nb := qabsmax.Shape().Size()
	dm := DynamicMap()
	v := G.Gather(G.Const(g, dm[:]), G.InsertAxes(G.ConvertDType(qabsmax, dtypes.Int32), -1))
	group := G.DivScalar(G.Iota(g, shapes.Make(dtypes.Int32, nb), 0), int32(DQBlockSize))
	a2 := G.Gather(absmax2, G.InsertAxes(group, -1))
	return G.Add(G.Mul(v, a2), offset)
}
