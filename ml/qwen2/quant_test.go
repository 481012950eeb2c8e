package qwen2

import (
	"fmt"
	"path/filepath"
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

// TestPreQuantizedFile loads a base whose linear weights come from package
// quant's cache file and checks it equals quantising at load time.
func TestPreQuantizedFile(t *testing.T) {
	backend := testBackend(t)
	cfg := tinyConfig
	cfg.HiddenSize, cfg.IntermediateSize, cfg.HeadDim = 64, 128, 16
	src := randomSource{cfg, 0.1, 4}
	b := packedBatch(16, 2, cfg.VocabSize, 3)
	for _, q := range []Quantization{QuantInt8, QuantNF4} {
		var ws []*quant.Weight
		for _, s := range cfg.BaseTensors() {
			if !s.Linear {
				continue
			}
			_, v, _ := src.Float32(s.Name)
			w, err := quant.Quantize(s.Name, quant.Scheme(q), v, s.Shape[0], s.Shape[1])
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, w)
		}
		path := filepath.Join(t.TempDir(), "q.safetensors")
		if err := quant.WriteFile(path, ws, nil); err != nil {
			t.Fatal(err)
		}
		read, _, err := quant.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var logits [][]float32
		for _, s := range []WeightSource{src, WithQuantized(noLinear{src}, read)} {
			m, err := New(cfg, Options{DType: dtypes.Float32, Quantization: q})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.LoadBase(s, 0); err != nil {
				t.Fatal(err)
			}
			l, _, _ := forwardAndGrads(t, backend, m, b)
			logits = append(logits, l)
		}
		if r := relErr(logits[1], logits[0]); r != 0 {
			t.Errorf("%s: pre-quantised base differs: relative error %.3g", q, r)
		}
	}
}

// noLinear fails on linear weights, to prove they are not read.
type noLinear struct{ randomSource }

func (n noLinear) Float32(name string) ([]int, []float32, error) {
	for _, s := range n.cfg.BaseTensors() {
		if s.Name == name && s.Linear {
			return nil, nil, fmt.Errorf("linear weight %s read although pre-quantised", name)
		}
	}
	return n.randomSource.Float32(name)
}
