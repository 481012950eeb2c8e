package quant

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pipeml/pipe/ml/checkpoint"
)

func TestQuantizeModelAndFile(t *testing.T) {
	dir := t.TempDir()
	cfg := checkpoint.TinyConfig()
	cfg.VocabSize = 256
	if err := checkpoint.WriteRandom(dir, cfg, checkpoint.RandomOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	m, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, scheme := range []Scheme{SchemeI8, SchemeNF} {
		t.Run(string(scheme), func(t *testing.T) {
			ws, err := QuantizeModel(t.Context(), m, scheme)
			if err != nil {
				t.Fatal(err)
			}
			if want := 7 * cfg.NumHiddenLayers; len(ws) != want {
				t.Fatalf("%d weights, want %d", len(ws), want)
			}
			path := filepath.Join(t.TempDir(), "q.safetensors")
			if err := WriteFile(path, ws, map[string]string{"source": "test"}); err != nil {
				t.Fatal(err)
			}
			got, meta, err := ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if meta["scheme"] != string(scheme) || meta["source"] != "test" {
				t.Errorf("metadata = %v", meta)
			}
			if len(got) != len(ws) {
				t.Fatalf("read %d weights, wrote %d", len(got), len(ws))
			}
			byName := map[string]*Weight{}
			for _, w := range ws {
				byName[w.Name] = w
			}
			for _, w := range got {
				orig := byName[w.Name]
				if orig == nil || !slices.Equal(w.Dequantize(), orig.Dequantize()) {
					t.Errorf("weight %s changed through the file", w.Name)
				}
			}
			// Writing again gives the same bytes.
			path2 := filepath.Join(t.TempDir(), "q.safetensors")
			WriteFile(path2, got, map[string]string{"source": "test"})
			a, _ := os.ReadFile(path)
			b, _ := os.ReadFile(path2)
			if !bytes.Equal(a, b) {
				t.Error("rewriting the file changed its bytes")
			}
		})
	}
	// A foreign safetensors file is rejected with its name.
	if _, _, err := ReadFile(filepath.Join(dir, "model.safetensors")); err == nil || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("ReadFile of a checkpoint: %v", err)
	}
}
