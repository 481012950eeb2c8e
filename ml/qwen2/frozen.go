package qwen2

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
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
}

// hostTensor is a frozen tensor prepared on the host, before it becomes
// variables: the work that can run in parallel.
type hostTensor struct {
	ft      *frozenTensor
	names   []string
	values  []*tensors.Tensor
	devSize int64
}

// prepareFrozen converts or quantises values on the host (package quant
// does the quantisation). pre, when non-nil, is the tensor already
// quantised (from a cached file) and values is ignored.
func prepareFrozen(name string, shape []int, values []float32, q Quantization, dtype dtypes.DType, pre *quant.Weight) (*hostTensor, error) {
	ft := &frozenTensor{name: name, shape: shape, quant: q, dtype: dtype}
	ht := &hostTensor{ft: ft}
	add := func(n string, t *tensors.Tensor) {
		ht.names = append(ht.names, n)
		ht.values = append(ht.values, t)
		ht.devSize += int64(t.Shape().Memory())
	}
	if q == QuantNone {
		t, err := float32sToTensor(values, dtype, shape...)
		if err != nil {
			return nil, err
		}
		add("value", t)
		return ht, nil
	}
	if len(shape) != 2 {
		return nil, fmt.Errorf("%s quantisation needs a matrix, got shape %v", q, shape)
	}
	w := pre
	if w == nil {
		var err error
		if w, err = quant.Quantize(name, quant.Scheme(q), values, shape[0], shape[1]); err != nil {
			return nil, err
		}
	} else if rows, cols := w.Shape(); w.Scheme() != quant.Scheme(q) || rows != shape[0] || cols != shape[1] {
		return nil, fmt.Errorf("pre-quantised weight is %s [%d, %d], want %s %v", w.Scheme(), rows, cols, q, shape)
	}
	for _, p := range w.Parts() {
		add(p.Suffix, p.Tensor)
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
// right here (package quant's graph functions), so that XLA can fuse the
// dequantisation with its consumer.
func (ft *frozenTensor) node(g *G.Graph) *G.Node {
	return ft.anchoredNode(g, nil, nil)
}

// anchoredNode is node with the stored parts tied to x as p.anchored
// says, so that a checkpointed pass dequantises again in the backward
// pass rather than keeping the dequantised weight alive.
func (ft *frozenTensor) anchoredNode(g *G.Graph, p *pass, x *G.Node) *G.Node {
	if ft.quant == QuantNone {
		return ft.vars[0].NodeValue(g)
	}
	parts := make(map[string]*G.Node, len(ft.vars))
	for _, v := range ft.vars {
		parts[v.Name()] = p.anchored(v.NodeValue(g), x)
	}
	w, err := quant.Dequantize(quant.Scheme(ft.quant), parts, ft.dtype)
	if err != nil {
		panic(fmt.Errorf("qwen2: %s: %w", ft.name, err))
	}
	return w
}
