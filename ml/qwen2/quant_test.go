package qwen2

import (
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/pipeml/pipe/ml/quant"
)

// dequantSource serves src's tensors with the linear weights replaced by
// their host-side quantise-dequantise round trip (package quant).
type dequantSource struct {
	randomSource
	q Quantization
}

func (d dequantSource) Float32(name string) ([]int, []float32, error) {
	shape, v, err := d.randomSource.Float32(name)
	if err != nil || len(shape) != 2 || name == "model.embed_tokens.weight" || name == "lm_head.weight" {
		return shape, v, err
	}
	switch d.q {
	case QuantInt8:
		q, err := quant.QuantizeInt8(v, shape[0], shape[1])
		if err != nil {
			return nil, nil, err
		}
		return shape, q.Dequantize(), nil
	default:
		q, err := quant.QuantizeNF4(v, shape[0], shape[1], true)
		if err != nil {
			return nil, nil, err
		}
		return shape, q.Dequantize(), nil
	}
}

// TestQuantizedBaseMatchesHostDequantisation checks the in-graph
// dequantisation: a model with an int8/NF4 base gives the logits of a
// float32 model whose weights were dequantised on the host by package quant.
func TestQuantizedBaseMatchesHostDequantisation(t *testing.T) {
	backend := testBackend(t)
	cfg := tinyConfig
	cfg.HiddenSize, cfg.IntermediateSize, cfg.HeadDim = 64, 128, 16
	b := packedBatch(16, 2, cfg.VocabSize, 3)
	for _, q := range []Quantization{QuantInt8, QuantNF4} {
		qm, err := New(cfg, Options{DType: dtypes.Float32, Quantization: q})
		if err != nil {
			t.Fatal(err)
		}
		if err := qm.LoadBase(randomSource{cfg, 0.1, 4}, 0); err != nil {
			t.Fatal(err)
		}
		ref, err := New(cfg, Options{DType: dtypes.Float32})
		if err != nil {
			t.Fatal(err)
		}
		if err := ref.LoadBase(dequantSource{randomSource{cfg, 0.1, 4}, q}, 0); err != nil {
			t.Fatal(err)
		}
		plain, err := New(cfg, Options{DType: dtypes.Float32})
		if err != nil {
			t.Fatal(err)
		}
		if err := plain.LoadBase(randomSource{cfg, 0.1, 4}, 0); err != nil {
			t.Fatal(err)
		}
		got, _, _ := forwardAndGrads(t, backend, qm, b)
		want, _, _ := forwardAndGrads(t, backend, ref, b)
		orig, _, _ := forwardAndGrads(t, backend, plain, b)
		if r := relErr(got, want); r > 1e-5 {
			t.Errorf("%s: in-graph dequantisation differs from package quant's: relative error %.3g", q, r)
		}
		t.Logf("%s: base %d bytes on device; logits vs host dequantisation %.3g, vs unquantised %.3g",
			q, qm.BaseBytes(), relErr(got, want), relErr(got, orig))
	}
}
