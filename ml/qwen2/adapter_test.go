package qwen2

import (
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/pipeml/pipe/ml/checkpoint"
	"github.com/pipeml/pipe/ml/safetensors"
)

// TestAdapterRoundTrip exports a Go adapter in PEFT's format, imports it
// back, merges it into the base and checks all three give the same logits.
func TestAdapterRoundTrip(t *testing.T) {
	backend := testBackend(t)
	dir := t.TempDir()
	cfg := checkpoint.TinyConfig()
	cfg.VocabSize, cfg.TieWordEmbeddings = 300, false
	base := filepath.Join(dir, "base")
	if err := checkpoint.WriteRandom(base, cfg, checkpoint.RandomOptions{Seed: 3, DType: safetensors.F32, Std: 0.1, BiasStd: 0.1}); err != nil {
		t.Fatal(err)
	}
	tok := []int32{5, 17, 250, 3, 99, 42, 7, 8, 120, 200, 1, 0}
	pos := make([]int32, 12)
	seg := make([]int32, 12)
	for i := range pos {
		pos[i] = int32(i % 6)
		seg[i] = int32(i / 6)
	}
	w := make([]float32, 12)
	for i := range w {
		w[i] = 1
	}
	b := fixtureBatch{
		tokens:    tensors.FromFlatDataAndDimensions(tok, 1, 12),
		positions: tensors.FromFlatDataAndDimensions(pos, 1, 12),
		segments:  tensors.FromFlatDataAndDimensions(seg, 1, 12),
		targets:   tensors.FromFlatDataAndDimensions(tok, 1, 12),
		weights:   tensors.FromFlatDataAndDimensions(w, 1, 12),
	}
	exportRoundTrip(t, backend, base, b, filepath.Join(dir, "out"))
}
