package qwen2

import (
	"fmt"

	"github.com/gomlx/compute/dtypes"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
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

// newFrozen creates the variables of one base tensor under /base.
func newFrozen(store *model.Store, name string, shape []int, values []float32, q Quantization, dtype dtypes.DType) (*frozenTensor, error) {
	ft := &frozenTensor{name: name, shape: shape, quant: q, dtype: dtype}
	scope := store.Scope("/base/" + dotsToSlashes(name))
	switch q {
	case QuantNone:
		t, err := float32sToTensor(values, dtype, shape...)
		if err != nil {
			return nil, err
		}
		v, err := scope.CreateVariable("value", t)
		if err != nil {
			return nil, err
		}
		v.SetTrainable(false)
		ft.vars = []*model.Variable{v}
	default:
		return nil, fmt.Errorf("quantization %q is not available yet", q)
	}
	return ft, nil
}

// node returns the tensor's value in the graph, dequantised to ft.dtype.
func (ft *frozenTensor) node(g *G.Graph) *G.Node {
	switch ft.quant {
	case QuantNone:
		return ft.vars[0].NodeValue(g)
	}
	panic(fmt.Sprintf("qwen2: %s: quantization %q not supported", ft.name, ft.quant))
}
