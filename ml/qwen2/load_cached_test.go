package qwen2

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/pipeml/pipe/ml/checkpoint"
	"github.com/pipeml/pipe/ml/safetensors"
)

// TestLoadCachedQuantizedBase checks that the quantised base is written
// once and reused, that the reused base gives the logits of a fresh Load,
// and that a changed checkpoint gets a new entry.
func TestLoadCachedQuantizedBase(t *testing.T) {
	backend := testBackend(t)
	cfg := checkpoint.TinyConfig()
	cfg.VocabSize = 256
	dir := t.TempDir()
	if err := checkpoint.WriteRandom(dir, cfg, checkpoint.RandomOptions{Seed: 3, DType: safetensors.F32, Std: 0.1}); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	b := packedBatch(16, 2, cfg.VocabSize, 3)
	for _, q := range []Quantization{QuantInt8, QuantNF4} {
		opts := Options{DType: dtypes.Float32, Quantization: q}
		fresh, err := Load(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		want, _, _ := forwardAndGrads(t, backend, fresh, b)
		for i, wantHit := range []bool{false, true} {
			m, hit, err := LoadCached(t.Context(), dir, opts, cache)
			if err != nil {
				t.Fatal(err)
			}
			if hit != wantHit {
				t.Errorf("%s load %d: reused = %v, want %v", q, i, hit, wantHit)
			}
			got, _, _ := forwardAndGrads(t, backend, m, b)
			if r := relErr(got, want); r != 0 {
				t.Errorf("%s load %d: logits differ from Load's: relative error %.3g", q, i, r)
			}
		}
	}
	entries, _ := filepath.Glob(filepath.Join(cache, "quantized", "*.safetensors"))
	if len(entries) != 2 {
		t.Fatalf("cache holds %d entries, want one per scheme: %v", len(entries), entries)
	}
	// A rewritten checkpoint is a new entry.
	later := time.Now().Add(time.Minute)
	files, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	for _, f := range files {
		os.Chtimes(f, later, later)
	}
	if _, hit, err := LoadCached(t.Context(), dir, Options{DType: dtypes.Float32, Quantization: QuantInt8}, cache); err != nil || hit {
		t.Errorf("after the checkpoint changed: reused = %v, err = %v; want a new entry", hit, err)
	}
}
