package qwen2

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/pipeml/pipe/ml/quant"
)

// frozenTensor is one base tensor held on the device as non-trainable
// variables, in its stored form (plain or quantised).
type frozenTensor struct {
	name  string
	shape []int
	quant Quantization
	dtype dtypes.DType // dtype of the value the graph sees
	vars  []*model.Variable
	// nf4Offset is the double-quantisation offset (a constant of the graph).
	nf4Offset float32
}

// hostTensor is a frozen tensor prepared on the host, before it becomes
// variables: the work that can run in parallel.
type hostTensor struct {
	ft      *frozenTensor
	names   []string
	values  []*tensors.Tensor
	devSize int64
}

// prepareFrozen converts or quantises values on the host.
func prepareFrozen(name string, shape []int, values []float32, q Quantization, dtype dtypes.DType) (*hostTensor, error) {
	ft := &frozenTensor{name: name, shape: shape, quant: q, dtype: dtype}
	ht := &hostTensor{ft: ft}
	add := func(n string, t *tensors.Tensor) {
		ht.names = append(ht.names, n)
		ht.values = append(ht.values, t)
		ht.devSize += int64(t.Shape().Memory())
	}
	switch q {
	case QuantNone:
		t, err := float32sToTensor(values, dtype, shape...)
		if err != nil {
			return nil, err
		}
		add("value", t)
	case QuantInt8:
		if len(shape) != 2 {
			return nil, fmt.Errorf("int8 needs a matrix, got shape %v", shape)
		}
		qt, err := quant.QuantizeInt8(values, shape[0], shape[1])
		if err != nil {
			return nil, err
		}
		add("int8_codes", tensors.FromFlatDataAndDimensions(qt.Codes, shape...))
		add("int8_absmax", tensors.FromFlatDataAndDimensions(qt.Absmax, shape[0]))
	case QuantNF4:
		if len(shape) != 2 || shape[0]*shape[1]%quant.NF4BlockSize != 0 {
			return nil, fmt.Errorf("nf4 needs a matrix whose size is a multiple of %d, got shape %v", quant.NF4BlockSize, shape)
		}
		qt, err := quant.QuantizeNF4(values, shape[0], shape[1], true)
		if err != nil {
			return nil, err
		}
		add("nf4_packed", tensors.FromFlatDataAndDimensions(qt.Packed, len(qt.Packed)))
		add("nf4_qabsmax", tensors.FromFlatDataAndDimensions(qt.QAbsmax, len(qt.QAbsmax)))
		add("nf4_absmax2", tensors.FromFlatDataAndDimensions(qt.Absmax2, len(qt.Absmax2)))
		ft.nf4Offset = qt.Offset
	default:
		return nil, fmt.Errorf("unknown quantization %q", q)
	}
	return ht, nil
}

// register creates the variables under /base in store.
func (ht *hostTensor) register(store *model.Store) (*frozenTensor, error) {
	scope := store.Scope("/base/" + dotsToSlashes(ht.ft.name))
	for i, n := range ht.names {
		v, err := scope.CreateVariable(n, ht.values[i])
		if err != nil {
			return nil, err
		}
		v.SetTrainable(false)
		ht.ft.vars = append(ht.ft.vars, v)
	}
	return ht.ft, nil
}

// node returns the tensor's value in the graph, dequantised to ft.dtype
// right here, so that XLA can fuse the dequantisation with its consumer.
func (ft *frozenTensor) node(g *G.Graph) *G.Node {
	switch ft.quant {
	case QuantNone:
		return ft.vars[0].NodeValue(g)
	case QuantInt8:
		codes := ft.vars[0].NodeValue(g)                   // int8 [out, in]
		scale := G.DivScalar(ft.vars[1].NodeValue(g), 127) // f32 [out]
		w := G.Mul(G.ConvertDType(codes, dtypes.Float32), G.InsertAxes(scale, -1))
		return G.ConvertDType(w, ft.dtype)
	case QuantNF4:
		return ft.dequantNF4(g)
	}
	panic(fmt.Sprintf("qwen2: %s: quantization %q not supported", ft.name, ft.quant))
}

// dequantNF4 decodes NF4 with double-quantised block scales:
// w[i] = NF4Code[code[i]] · (DynamicMap[qabsmax[b]]·absmax2[b/256] + offset),
// b = i/64, two codes a byte with the first in the high nibble.
func (ft *frozenTensor) dequantNF4(g *G.Graph) *G.Node {
	packed := ft.vars[0].NodeValue(g) // uint8 [n/2]
	qabsmax := ft.vars[1].NodeValue(g)
	absmax2 := ft.vars[2].NodeValue(g)
	n := ft.shape[0] * ft.shape[1]
	blocks := n / quant.NF4BlockSize
	hi := G.BitwiseShiftRightLogicalScalar(packed, uint8(4))
	lo := G.BitwiseAnd(packed, G.Scalar(g, dtypes.Uint8, 0x0f))
	codes := G.Reshape(G.Stack([]*G.Node{hi, lo}, 1), n) // [n], high nibble first
	table := G.Const(g, quant.NF4Code[:])
	vals := G.Gather(table, G.InsertAxes(G.ConvertDType(codes, dtypes.Int32), -1)) // f32 [n]
	dm := quant.DynamicMap()
	dmap := G.Const(g, dm[:])
	s1 := G.Gather(dmap, G.InsertAxes(G.ConvertDType(qabsmax, dtypes.Int32), -1)) // [blocks]
	group := G.DivScalar(G.Iota(g, shapes.Make(dtypes.Int32, blocks), 0), quant.DQBlockSize)
	s2 := G.Gather(absmax2, G.InsertAxes(group, -1))
	scales := G.AddScalar(G.Mul(s1, s2), float64(ft.nf4Offset)) // [blocks]
	w := G.Mul(G.Reshape(vals, blocks, quant.NF4BlockSize), G.InsertAxes(scales, -1))
	return G.ConvertDType(G.Reshape(w, ft.shape...), ft.dtype)
}
