package train

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	_ "github.com/gomlx/compute/gobackend"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/pipeml/pipe/ml/safetensors"
)

// The tiny language model of the tests: frozen token and position
// embeddings and output projection; trainable a mixing matrix A and an
// output bias. Each token sees the mean of the hidden states of the
// earlier tokens of its own document (causal, per segment), so packing
// is only correct if segments are honoured.
const (
	tinyVocab  = 16
	tinyDim    = 8
	tinyMaxPos = 64
)

func testBackend(t testing.TB) compute.Backend {
	t.Helper()
	b, err := compute.NewWithConfig(GoBackend)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randTensor(r *rand.Rand, scale float32, dims ...int) *tensors.Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = (r.Float32()*2 - 1) * scale
	}
	return tensors.FromFlatDataAndDimensions(v, dims...)
}

// newTinyModel builds the tiny model with weights from seed; dropout is
// applied to the mixed state when training.
func newTinyModel(t testing.TB, seed uint64, dropout float64) *Model {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	store := model.NewStore()
	mk := func(name string, v *tensors.Tensor, trainable bool) *model.Variable {
		vv, err := store.CreateVariable(name, v)
		if err != nil {
			t.Fatal(err)
		}
		vv.SetTrainable(trainable)
		return vv
	}
	emb := mk("/base/emb", randTensor(r, 1, tinyVocab, tinyDim), false)
	pos := mk("/base/pos", randTensor(r, 0.3, tinyMaxPos, tinyDim), false)
	out := mk("/lora/out", randTensor(r, 1, tinyDim, tinyVocab), true)
	a := mk("/lora/A", randTensor(r, 0.1, tinyDim, tinyDim), true)
	bias := mk("/lora/bias", tensors.FromShape(shapes.Make(dtypes.Float32, tinyVocab)), true)
	m := &Model{Store: store, Trainable: []*model.Variable{a, out, bias}}
	m.Loss = func(g *Graph, b BatchNodes, training bool) *Node {
		rows, length := b.IDs.Shape().Dim(0), b.IDs.Shape().Dim(1)
		h := Add(Gather(emb.NodeValue(g), InsertAxes(b.IDs, -1)), Gather(pos.NodeValue(g), InsertAxes(b.Positions, -1))) // [R,S,D]
		// mask[r,i,j] = j <= i && seg[r,i] == seg[r,j]
		i := Iota(g, shapes.Make(dtypes.Int32, length, length), 0)
		j := Iota(g, shapes.Make(dtypes.Int32, length, length), 1)
		causal := BroadcastToDims(InsertAxes(LessOrEqual(j, i), 0), rows, length, length)
		same := Equal(InsertAxes(b.Segments, -1), InsertAxes(b.Segments, 1))
		mask := ConvertDType(LogicalAnd(causal, same), dtypes.Float32)
		count := ReduceSum(mask, -1)                                             // [R,S]
		mix := Einsum("rij,rjd->rid", mask, h)                                   // [R,S,D]
		mix = Div(mix, InsertAxes(Max(count, Scalar(g, dtypes.Float32, 1)), -1)) // mean
		if training && dropout > 0 {
			keep := GreaterOrEqual(store.RandomUniform(g, mix.Shape()), Scalar(g, dtypes.Float32, dropout))
			mix = Where(keep, DivScalar(mix, 1-dropout), ZerosLike(mix))
		}
		x := Add(h, Tanh(Einsum("rsd,de->rse", mix, a.NodeValue(g))))
		logits := Add(Einsum("rsd,dv->rsv", x, out.NodeValue(g)), Reshape(bias.NodeValue(g), 1, 1, tinyVocab)) // [R,S,V]
		logp := ReduceSum(Mul(LogSoftmax(logits, -1), OneHot(b.Targets, tinyVocab, dtypes.Float32)), -1)
		return ReduceAllSum(Mul(Neg(logp), b.Weights))
	}
	m.SaveAdapter = func(dir string) error {
		var entries []safetensors.Entry
		for _, v := range m.Trainable {
			val, err := v.Value()
			if err != nil {
				return err
			}
			var data []byte
			if err := val.ConstBytes(func(b []byte) { data = slices.Clone(b) }); err != nil {
				return err
			}
			entries = append(entries, safetensors.Entry{Name: v.Path(), DType: safetensors.F32, Shape: val.Shape().Dimensions, Data: data})
		}
		return safetensors.Write(filepath.Join(dir, "adapter.safetensors"), entries, nil)
	}
	return m
}

// tinyExamples returns n examples of a learnable pattern: each document
// counts up from a random start (mod vocab); the loss mask covers the
// second half of each document (the "assistant" part).
func tinyExamples(seed uint64, n, minLen, maxLen int) []Example {
	r := rand.New(rand.NewPCG(seed, 2))
	out := make([]Example, n)
	for k := range out {
		l := minLen + r.IntN(maxLen-minLen+1)
		start := r.IntN(tinyVocab)
		ex := Example{IDs: make([]int32, l), Mask: make([]bool, l)}
		for i := range l {
			ex.IDs[i] = int32((start + i) % tinyVocab)
			ex.Mask[i] = i >= l/2
		}
		out[k] = ex
	}
	return out
}

func exampleStats(exs []Example) DataStats {
	var s DataStats
	for i := range exs {
		s.Records++
		s.Examples++
		s.Tokens += len(exs[i].IDs)
		s.LossTokens += exs[i].lossTokens()
	}
	return s
}
