package qwen2

import (
	"slices"
	"testing"

	"github.com/gomlx/compute/dtypes"
)

// TestGenerateCacheEqualsNoCache decodes with and without the KV cache,
// greedy and sampled, across a cache bucket boundary.
func TestGenerateCacheEqualsNoCache(t *testing.T) {
	backend := testBackend(t)
	m := randomModel(t, tinyConfig, Options{DType: dtypes.Float32}, 11)
	gen := m.NewGenerator(backend)
	prompt := make([]int32, 60) // 60 + 10 new tokens crosses the 64-token bucket into the 96-token one
	for i := range prompt {
		prompt[i] = int32((i*37 + 5) % tinyConfig.VocabSize)
	}
	for _, opts := range []GenerateOptions{
		{MaxNewTokens: 10},
		{MaxNewTokens: 10, Temperature: 0.8, TopK: 20, TopP: 0.9, Seed: 3},
	} {
		cached, err := gen.Generate(prompt, opts)
		if err != nil {
			t.Fatal(err)
		}
		opts.NoCache = true
		uncached, err := gen.Generate(prompt, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(cached) != 10 || !slices.Equal(cached, uncached) {
			t.Errorf("temperature %g: KV cache %v, no cache %v", opts.Temperature, cached, uncached)
		}
		// A stop token ends generation and is included.
		opts.NoCache = false
		opts.StopTokens = []int32{cached[3]}
		stopped, err := gen.Generate(prompt, opts)
		if err != nil {
			t.Fatal(err)
		}
		if i := slices.Index(cached, cached[3]); !slices.Equal(stopped, cached[:i+1]) {
			t.Errorf("stop token %d: got %v from %v", cached[3], stopped, cached)
		}
	}
}

func TestBucketLen(t *testing.T) {
	prev, distinct := 0, 0
	for n := 1; n <= 4096; n++ {
		b := bucketLen(n)
		if b < n || b < prev {
			t.Fatalf("bucketLen(%d) = %d (previous %d)", n, b, prev)
		}
		if n > 64 && b > n*3/2+1 {
			t.Errorf("bucketLen(%d) = %d pads more than half", n, b)
		}
		if b != prev {
			distinct++
		}
		prev = b
	}
	if distinct > 14 {
		t.Errorf("%d distinct lengths up to 4096", distinct)
	}
	for n, want := range map[int]int{1: 64, 64: 64, 65: 96, 96: 96, 97: 128, 129: 192, 3600: 4096, 3000: 3072} {
		if got := bucketLen(n); got != want {
			t.Errorf("bucketLen(%d) = %d, want %d", n, got, want)
		}
	}
}
