package dedupe

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/pipeml/pipe/artifacts"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"  a\t\tb\r\n c  ", "a b c"},
		{"x\u00a0y", "x y"},
	} {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestExactKey(t *testing.T) {
	chat := func(sys, user, asst string) *artifacts.Record {
		return &artifacts.Record{Messages: []artifacts.Message{
			{Role: "system", Content: sys}, {Role: "user", Content: user}, {Role: "assistant", Content: asst},
		}, Meta: map[string]any{"source": sys}}
	}
	a := ExactKey(chat("s1", "fix  it", "ok\n done"))
	if b := ExactKey(chat("s2", "fix it", "ok done ")); a != b {
		t.Errorf("keys differ for records differing only in system prompt, spacing and meta")
	}
	if b := ExactKey(chat("s1", "fix it", "ok done!")); a == b {
		t.Errorf("keys equal for different content")
	}
	// The same text in another role is other content.
	swapped := &artifacts.Record{Messages: []artifacts.Message{{Role: "assistant", Content: "fix it"}, {Role: "user", Content: "ok done"}}}
	if ExactKey(swapped) == a {
		t.Errorf("roles do not count in the key")
	}
	pc := &artifacts.Record{Prompt: "a", Completion: "b"}
	pc2 := &artifacts.Record{Prompt: "ab", Completion: ""}
	if ExactKey(pc) == ExactKey(pc2) {
		t.Errorf("prompt/completion boundary does not count in the key")
	}
}

func TestCodeText(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  artifacts.Record
		want string
	}{
		{"psm", artifacts.Record{Prompt: "<|fim_prefix|>func f() {\n<|fim_suffix|>\n}\n<|fim_middle|>", Completion: "\treturn 1"}, "func f() {\n\treturn 1\n}\n"},
		{"repo", artifacts.Record{Prompt: "<|repo_name|>r\n<|file_sep|>a.go\n<|fim_prefix|>A<|fim_suffix|>C<|fim_middle|>", Completion: "B<|endoftext|>"}, "\nr\n\na.go\nABC"},
		{"plain", artifacts.Record{Prompt: "x <|not special", Completion: " y"}, "x <|not special y"},
		{"chat", artifacts.Record{Messages: []artifacts.Message{{Role: "system", Content: "s"}, {Role: "user", Content: "u"}, {Role: "assistant", Content: "a"}}}, "u\na\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CodeText(&tc.rec); got != tc.want {
				t.Errorf("CodeText = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWords(t *testing.T) {
	var got []string
	words("if x:=a_b(c1, \"héllo\")  wörld;", func(w string) { got = append(got, w) })
	want := []string{"if", "x", "a_b", "c1", "héllo", "wörld"}
	if !slices.Equal(got, want) {
		t.Errorf("words = %q, want %q", got, want)
	}
}

// randomPair returns two texts whose 1-word shingle sets have Jaccard
// similarity exactly j (up to rounding): shared words plus words of their
// own.
func randomPair(r *rand.Rand, size int, j float64) (string, string, float64) {
	shared := int(math.Round(j * float64(size)))
	own := (size - shared)
	var a, b []string
	for i := 0; i < shared; i++ {
		w := fmt.Sprintf("s%x", r.Uint64())
		a, b = append(a, w), append(b, w)
	}
	for i := 0; i < own; i++ {
		a = append(a, fmt.Sprintf("a%x", r.Uint64()))
		b = append(b, fmt.Sprintf("b%x", r.Uint64()))
	}
	return strings.Join(a, " "), strings.Join(b, " "), float64(shared) / float64(shared+2*own)
}

// TestSimilarityUnbiased checks that the multiply-add permutations give
// an unbiased Jaccard estimate: over many random pairs the mean error is
// small and the spread matches a binomial over 256 permutations.
func TestSimilarityUnbiased(t *testing.T) {
	p := BigCode
	p.NGram = 1
	m, err := NewMinHasher(p)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, j := range []float64{0.3, 0.7, 0.9} {
		var sumErr, sumSq float64
		const trials = 200
		var truth float64
		for range trials {
			x, y, jj := randomPair(r, 200, j)
			truth = jj
			s, err := m.Sketch(t.Context(), 2, func(i int) string { return []string{x, y}[i] }, 1)
			if err != nil {
				t.Fatal(err)
			}
			d := s.Similarity(0, 1) - jj
			sumErr += d
			sumSq += d * d
		}
		bias := sumErr / trials
		sd := math.Sqrt(sumSq / trials)
		want := math.Sqrt(truth * (1 - truth) / float64(p.Perms))
		if math.Abs(bias) > 0.01 || sd > 1.5*want {
			t.Errorf("J=%.2f: bias %.4f, sd %.4f (binomial sd %.4f)", truth, bias, sd, want)
		}
	}
}

func TestCandidatesDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var texts []string
	for i := 0; i < 300; i++ {
		base := make([]string, 60)
		for k := range base {
			base[k] = fmt.Sprintf("w%d", r.IntN(5000))
		}
		texts = append(texts, strings.Join(base, " "))
		if i%3 == 0 { // a near copy: one word changed, J = 51/61
			base[30] = "changed"
			texts = append(texts, strings.Join(base, " "))
		}
	}
	m, _ := NewMinHasher(BigCode)
	var prev []Edge
	for _, par := range []int{1, 3, 8} {
		s, err := m.Sketch(t.Context(), len(texts), func(i int) string { return texts[i] }, par)
		if err != nil {
			t.Fatal(err)
		}
		edges, err := Candidates(t.Context(), s, CandidateOptions{Threshold: 0.7, Parallelism: par})
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil && !slices.Equal(prev, edges) {
			t.Fatalf("parallelism %d gives other edges", par)
		}
		prev = edges
	}
	if len(prev) < 90 {
		t.Errorf("found %d near-duplicate pairs, want about 100", len(prev))
	}
}

func TestComponents(t *testing.T) {
	got := Components(6, []Edge{{A: 4, B: 5}, {A: 1, B: 4}, {A: 2, B: 3}})
	want := []int{0, 1, 2, 2, 1, 1}
	if !slices.Equal(got, want) {
		t.Errorf("Components = %v, want %v", got, want)
	}
}

// modPrimeSketch is the reference the fast sketch is measured against:
// BigCode's and datasketch's permutations, (a*x+b) mod (2^61-1) truncated
// to 32 bits, over the same shingle hashes.
func modPrimeSketch(a, b []uint64, m *MinHasher, text string, mins []uint64) {
	const p = 1<<61 - 1
	for k := range mins {
		mins[k] = math.MaxUint64
	}
	m.Shingles(text, func(x uint64) {
		x = x&p + x>>61
		for k := range mins {
			hi, lo := bits.Mul64(a[k], x)
			// (hi*2^64 + lo) mod p, with 2^64 = 8 mod p.
			r := lo&p + lo>>61 + (hi<<3)&p + hi>>58 + b[k]
			r = r&p + r>>61
			if r >= p {
				r -= p
			}
			if v := r & 0xffffffff; v < mins[k] {
				mins[k] = v
			}
		}
	})
}

// BenchmarkSketch compares the multiply-add sketch with the mod-prime
// reference on the same 1,000 texts of 200 words (one goroutine).
func BenchmarkSketch(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	texts := make([]string, 1000)
	for i := range texts {
		ws := make([]string, 200)
		for k := range ws {
			ws[k] = fmt.Sprintf("w%d", r.IntN(50000))
		}
		texts[i] = strings.Join(ws, " ")
	}
	m, _ := NewMinHasher(BigCode)
	b.Run("muladd", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Sketch(b.Context(), len(texts), func(i int) string { return texts[i] }, 1); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(texts)*b.N)/b.Elapsed().Seconds(), "texts/s")
	})
	b.Run("modprime", func(b *testing.B) {
		const p = 1<<61 - 1
		mins := make([]uint64, m.p.Perms)
		ra, rb := make([]uint64, m.p.Perms), make([]uint64, m.p.Perms)
		for k := range ra {
			ra[k], rb[k] = m.a[k]%p, m.b[k]%p
		}
		for b.Loop() {
			for _, t := range texts {
				modPrimeSketch(ra, rb, m, t, mins)
			}
		}
		b.ReportMetric(float64(len(texts)*b.N)/b.Elapsed().Seconds(), "texts/s")
	})
}
