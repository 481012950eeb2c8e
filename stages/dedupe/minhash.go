package dedupe

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// Params configures MinHash sketches and LSH banding. BigCode's setting
// (The Stack, StarCoder) is 5-word shingles, 256 permutations, 25 bands of
// 10 rows: a pair of Jaccard similarity s becomes a candidate with
// probability 1-(1-s^10)^25 (0.51 at s=0.7, 0.94 at s=0.8, 0.024 at
// s=0.5). Bands*Rows may be less than Perms; the remaining permutations
// still serve the similarity estimate that verifies candidates.
type Params struct {
	// NGram is the shingle size in words.
	NGram int `json:"ngram"`
	// Perms is the number of hash permutations (signature length).
	Perms int `json:"perms"`
	// Bands and Rows shape the LSH index: Bands bands of Rows values.
	Bands int `json:"bands"`
	Rows  int `json:"rows"`
	// Seed picks the permutations.
	Seed uint64 `json:"seed"`
}

// BigCode is the near-deduplication setting of BigCode's The Stack and
// StarCoder.
var BigCode = Params{NGram: 5, Perms: 256, Bands: 25, Rows: 10, Seed: 42}

// Validate reports a parameter error.
func (p Params) Validate() error {
	switch {
	case p.NGram < 1:
		return fmt.Errorf("shingle size %d is less than 1", p.NGram)
	case p.Perms < 1:
		return fmt.Errorf("permutations %d is less than 1", p.Perms)
	case p.Bands < 1 || p.Rows < 1:
		return fmt.Errorf("bands %d and rows %d must be at least 1", p.Bands, p.Rows)
	case p.Bands*p.Rows > p.Perms:
		return fmt.Errorf("bands x rows (%d x %d) exceeds the %d permutations", p.Bands, p.Rows, p.Perms)
	}
	return nil
}

// CandidateProbability is the chance that a pair of Jaccard similarity s
// shares at least one band.
func (p Params) CandidateProbability(s float64) float64 {
	return 1 - math.Pow(1-math.Pow(s, float64(p.Rows)), float64(p.Bands))
}

// MinHasher computes sketches. It is immutable and safe for concurrent
// use.
type MinHasher struct {
	p Params
	// a and b are the coefficients of permutation i: h_i(x) = a[i]*x+b[i]
	// mod 2^64, with a[i] odd, so each h_i is a bijection of the 64-bit
	// shingle hashes (multiply-add hashing, the uint64 counterpart of the
	// (a*x+b) mod p permutations of datasketch and BigCode).
	a, b []uint64
}

// NewMinHasher returns a MinHasher for p.
func NewMinHasher(p Params) (*MinHasher, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	m := &MinHasher{p: p, a: make([]uint64, p.Perms), b: make([]uint64, p.Perms)}
	state := p.Seed
	for i := range m.a {
		m.a[i] = splitmix(&state) | 1
		m.b[i] = splitmix(&state)
	}
	return m, nil
}

// Params returns the parameters m was built with.
func (m *MinHasher) Params() Params { return m.p }

func splitmix(state *uint64) uint64 {
	*state += 0x9e3779b97f4a7c15
	return mix64(*state)
}

// mix64 is the splitmix64 finaliser: a bijection with full avalanche.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// hashWord is FNV-1a over the word's bytes.
func hashWord(w string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(w); i++ {
		h ^= uint64(w[i])
		h *= 0x100000001b3
	}
	return h
}

// Shingles calls fn with the 64-bit hash of every NGram-word shingle of
// text (overlapping, in order; repeated shingles are repeated). A text of
// fewer than NGram words has no shingles.
func (m *MinHasher) Shingles(text string, fn func(h uint64)) {
	n := m.p.NGram
	ring := make([]uint64, n)
	count := 0
	words(text, func(w string) {
		ring[count%n] = hashWord(w)
		count++
		if count < n {
			return
		}
		h := uint64(n)
		for k := count - n; k < count; k++ {
			h = h*0x9e3779b97f4a7c15 + ring[k%n]
		}
		fn(mix64(h))
	})
}

// Sketches holds the sketches of n texts in flat arrays.
type Sketches struct {
	Params
	// N is the number of texts.
	N int
	// Sig holds Perms values per text: the top 32 bits of each
	// permutation's minimum.
	Sig []uint32
	// Band holds Bands keys per text: a hash of the Rows full 64-bit
	// minima of that band.
	Band []uint64
	// Shingles counts each text's shingles; a text without any has no
	// meaningful sketch and is never a candidate.
	Shingles []int32
}

// Signature returns text i's signature.
func (s *Sketches) Signature(i int) []uint32 { return s.Sig[i*s.Perms : (i+1)*s.Perms] }

// Similarity estimates the Jaccard similarity of texts i and j: the
// fraction of permutations whose minima agree.
func (s *Sketches) Similarity(i, j int) float64 {
	a, b := s.Signature(i), s.Signature(j)
	eq := 0
	for k := range a {
		if a[k] == b[k] {
			eq++
		}
	}
	return float64(eq) / float64(len(a))
}

// Sketch computes the sketches of n texts, text(i) giving the i-th, with
// up to parallelism goroutines. The result does not depend on
// parallelism: each text's sketch is computed on its own and stored at
// its index. text may be called concurrently.
func (m *MinHasher) Sketch(ctx context.Context, n int, text func(i int) string, parallelism int) (*Sketches, error) {
	p := m.p
	s := &Sketches{
		Params:   p,
		N:        n,
		Sig:      make([]uint32, n*p.Perms),
		Band:     make([]uint64, n*p.Bands),
		Shingles: make([]int32, n),
	}
	if parallelism < 1 {
		parallelism = runtime.GOMAXPROCS(0)
	}
	const chunk = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < parallelism; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mins := make([]uint64, p.Perms)
			for ctx.Err() == nil {
				lo := int(next.Add(chunk)) - chunk
				if lo >= n {
					return
				}
				for i := lo; i < min(lo+chunk, n); i++ {
					m.sketchOne(text(i), mins, s, i)
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func (m *MinHasher) sketchOne(text string, mins []uint64, s *Sketches, i int) {
	for k := range mins {
		mins[k] = math.MaxUint64
	}
	a := m.a
	b, mins := m.b[:len(a)], mins[:len(a)]
	count := int32(0)
	m.Shingles(text, func(x uint64) {
		count++
		for k := range a {
			if v := a[k]*x + b[k]; v < mins[k] {
				mins[k] = v
			}
		}
	})
	s.Shingles[i] = count
	sig := s.Sig[i*m.p.Perms : (i+1)*m.p.Perms]
	for k, v := range mins {
		sig[k] = uint32(v >> 32)
	}
	for band := 0; band < m.p.Bands; band++ {
		h := uint64(band) + 0x51ed27
		for _, v := range mins[band*m.p.Rows : (band+1)*m.p.Rows] {
			h = mix64(h ^ v)
		}
		s.Band[i*m.p.Bands+band] = h
	}
}
