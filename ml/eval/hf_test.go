package eval

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/pipeml/pipe/ml/qwen2"
	"github.com/pipeml/pipe/ml/safetensors"
)

// hfFixtures are ml/qwen2's reference fixtures (make_fixtures.py, run with
// transformers and peft on the GPU machine): small random models, a PEFT
// adapter, a prompt and the ids of greedy generate() with the adapter.
const hfFixtures = "../qwen2/testdata/fixtures"

// TestGreedyMatchesHF checks the generation path evaluation uses (the
// adapter imported into a loaded base, generate with the KV cache and stop
// tokens) against Hugging Face's greedy generate(). Stop tokens are ids
// that do not occur in the reference, so they must not cut it short.
func TestGreedyMatchesHF(t *testing.T) {
	backend := testBackend(t)
	for _, name := range []string{"qwen2_bias_tied", "llama_nobias_untied"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(hfFixtures, name)
			f, err := safetensors.Open(filepath.Join(dir, "expect.safetensors"))
			if err != nil {
				t.Fatalf("fixture missing (ml/qwen2/testdata/make_fixtures.py makes it): %v", err)
			}
			defer f.Close()
			ints := func(key string) []int32 {
				x, ok := f.Tensor(key)
				if !ok {
					t.Fatalf("fixture has no %s", key)
				}
				v, err := x.Int64s()
				if err != nil {
					t.Fatal(err)
				}
				out := make([]int32, len(v))
				for i, y := range v {
					out[i] = int32(y)
				}
				return out
			}
			prompt, want := ints("gen.prompt"), ints("gen.greedy")
			m, err := qwen2.Load(filepath.Join(dir, "base"), qwen2.Options{DType: dtypes.Float32})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.ImportAdapter(filepath.Join(dir, "adapter")); err != nil {
				t.Fatal(err)
			}
			var stops []int32
			for id := int32(0); len(stops) < 3; id++ {
				if !slices.Contains(want, id) {
					stops = append(stops, id)
				}
			}
			got, stopped, _, err := generate(m.NewGenerator(backend), prompt, len(want), stops)
			if err != nil {
				t.Fatal(err)
			}
			if stopped || !slices.Equal(got, want) {
				t.Errorf("greedy generation (stopped %v):\n got %v\nwant %v (transformers)", stopped, got, want)
			}
			// A stop token that HF produced ends generation there.
			got, stopped, _, err = generate(m.NewGenerator(backend), prompt, len(want), []int32{want[4]})
			if err != nil {
				t.Fatal(err)
			}
			if i := slices.Index(want, want[4]); !stopped || !slices.Equal(got, want[:i+1]) {
				t.Errorf("stop at %d: got %v (stopped %v), want %v", want[4], got, stopped, want[:i+1])
			}
		})
	}
}
