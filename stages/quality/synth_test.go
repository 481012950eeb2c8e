package quality

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/stages/dedupe"
)

// corpus is a synthetic dataset with planted pairs: near pairs are edited
// copies meant to be caught (Jaccard about 0.8 to 0.95); far pairs are
// heavier edits (Jaccard about 0.4 to 0.55) that must stay apart. Every
// record has its own group.
type corpus struct {
	recs []*artifacts.Record
	near [][2]int
	far  [][2]int
}

// synthetic returns only the records of a corpus of n records with
// planted/2 near pairs and planted/4 far pairs.
func synthetic(n, planted int, seed uint64) []*artifacts.Record {
	return makeCorpus(n, planted/2, planted/4, seed).recs
}

// makeCorpus builds n records, of which near and far are the second
// members of planted pairs. Words follow a Zipf law over a 30,000-word
// vocabulary, so unrelated records share common words but hardly any
// 5-word shingle; 60% are chat records and 40% FIM records.
func makeCorpus(n, near, far int, seed uint64) *corpus {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	zipf := rand.NewZipf(r, 1.1, 2, 29999)
	word := func() string { return vocab[zipf.Uint64()] }
	c := &corpus{}
	base := n - near - far
	texts := make([][]string, 0, n)
	for i := 0; i < base; i++ {
		ws := make([]string, 80+r.IntN(220))
		for k := range ws {
			ws[k] = word()
		}
		texts = append(texts, ws)
	}
	edit := func(src []string, rate float64) []string {
		ws := append([]string(nil), src...)
		e := max(1, int(rate*float64(len(ws))+0.5))
		for range e {
			ws[r.IntN(len(ws))] = fmt.Sprintf("edit%d", r.Uint32())
		}
		return ws
	}
	for i := 0; i < near; i++ {
		a := r.IntN(base)
		texts = append(texts, edit(texts[a], 0.005+0.015*r.Float64()))
		c.near = append(c.near, [2]int{a, len(texts) - 1})
	}
	for i := 0; i < far; i++ {
		a := r.IntN(base)
		texts = append(texts, edit(texts[a], 0.06+0.02*r.Float64()))
		c.far = append(c.far, [2]int{a, len(texts) - 1})
	}
	// Shuffle so copies are not all at the end; keep pair indexes right.
	perm := r.Perm(n)
	shuffled := make([][]string, n)
	for i, p := range perm {
		shuffled[p] = texts[i]
	}
	for k := range c.near {
		c.near[k] = [2]int{perm[c.near[k][0]], perm[c.near[k][1]]}
	}
	for k := range c.far {
		c.far[k] = [2]int{perm[c.far[k][0]], perm[c.far[k][1]]}
	}
	for i, ws := range shuffled {
		meta := map[string]any{"group": fmt.Sprintf("g%06d", i)}
		if i%5 < 3 {
			meta["source"] = "claude_logs"
			cut := 10 + r.IntN(20)
			c.recs = append(c.recs, &artifacts.Record{
				Messages: []artifacts.Message{
					{Role: "system", Content: "You are a precise coding assistant."},
					{Role: "user", Content: strings.Join(ws[:cut], " ")},
					{Role: "assistant", Content: strings.Join(ws[cut:], " ")},
				},
				Meta: meta,
			})
			continue
		}
		meta["source"] = "fim:synth"
		var lines []string
		for k := 0; k < len(ws); k += 8 {
			lines = append(lines, "\t"+strings.Join(ws[k:min(k+8, len(ws))], " ")+";")
		}
		code := strings.Join(lines, "\n") + "\n"
		a := r.IntN(len(code) / 2)
		b := a + 1 + r.IntN(len(code)/3)
		c.recs = append(c.recs, &artifacts.Record{
			Prompt:     "<|fim_prefix|>" + code[:a] + "<|fim_suffix|>" + code[b:] + "<|fim_middle|>",
			Completion: code[a:b],
			Meta:       meta,
		})
	}
	return c
}

// vocab is the synthetic vocabulary: pronounceable identifiers.
var vocab = func() []string {
	r := rand.New(rand.NewPCG(1, 1))
	syl := []string{"ka", "to", "ri", "mu", "se", "na", "lo", "pi", "ve", "du", "go", "ba", "zen", "fir", "tal", "ox"}
	seen := map[string]bool{}
	var v []string
	for len(v) < 30000 {
		n := 1 + r.IntN(4)
		var b strings.Builder
		for range n {
			b.WriteString(syl[r.IntN(len(syl))])
		}
		if w := b.String(); !seen[w] {
			seen[w] = true
			v = append(v, w)
		}
	}
	return v
}()

func writeCorpus(t testing.TB, dir string, recs []*artifacts.Record) string {
	t.Helper()
	p := filepath.Join(dir, "corpus.jsonl")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := artifacts.NewRecordWriter(f)
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// jaccard is the exact Jaccard similarity of the shingle sets of two
// records' near-duplicate texts.
func jaccard(m *dedupe.MinHasher, a, b *artifacts.Record, roles []string) float64 {
	set := func(r *artifacts.Record) map[uint64]bool {
		s := map[uint64]bool{}
		m.Shingles(dedupe.Text(r, roles), func(h uint64) { s[h] = true })
		return s
	}
	sa, sb := set(a), set(b)
	inter := 0
	for h := range sa {
		if sb[h] {
			inter++
		}
	}
	return float64(inter) / float64(len(sa)+len(sb)-inter)
}

// clusterOf reads the rejected output and returns, for each record of
// the corpus file (its line minus one), the index of the representative
// it was dropped for, or its own index when it was not dropped as a
// near-duplicate.
func clusterOf(t testing.TB, n int, rejected []byte) []int {
	t.Helper()
	rep := make([]int, n)
	for i := range rep {
		rep[i] = i
	}
	var g int
	for _, line := range strings.Split(strings.TrimSpace(string(rejected)), "\n") {
		if line == "" {
			continue
		}
		var rec artifacts.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.MetaString("reject_reason") != ReasonNearDuplicate {
			continue
		}
		fmt.Sscanf(rec.MetaString("group"), "g%d", &g)
		d := rec.MetaString("reject_detail")
		var r int
		if _, err := fmt.Sscanf(d[strings.LastIndex(d, ":")+1:], "%d", &r); err != nil {
			t.Fatalf("detail %q names no line", d)
		}
		rep[g] = r - 1
	}
	return rep
}

// dedupeScore measures what the stage did to the planted pairs: the
// recall of near pairs whose exact Jaccard is at least 0.75 (both in one
// cluster), the share of far pairs (exact Jaccard below 0.6) in one
// cluster, and the share of records outside any planted pair dropped as
// near-duplicates (false positives among unrelated records).
type dedupeScore struct {
	recall, farMerged, unrelatedFP float64
	nearPairs, farPairs            int
}

func score(t testing.TB, c *corpus, rejected []byte, c2 *config) dedupeScore {
	rep := clusterOf(t, len(c.recs), rejected)
	m, _ := dedupe.NewMinHasher(c2.minhash())
	var s dedupeScore
	caught := 0
	inPair := map[int]bool{}
	for _, p := range c.near {
		inPair[p[0]], inPair[p[1]] = true, true
		if jaccard(m, c.recs[p[0]], c.recs[p[1]], c2.NearDupRoles) < 0.75 {
			continue
		}
		s.nearPairs++
		if rep[p[0]] == rep[p[1]] {
			caught++
		}
	}
	merged := 0
	for _, p := range c.far {
		inPair[p[0]], inPair[p[1]] = true, true
		if jaccard(m, c.recs[p[0]], c.recs[p[1]], c2.NearDupRoles) >= 0.6 {
			continue
		}
		s.farPairs++
		if rep[p[0]] == rep[p[1]] {
			merged++
		}
	}
	fp, unrelated := 0, 0
	for i := range c.recs {
		if inPair[i] {
			continue
		}
		unrelated++
		if rep[i] != i {
			fp++
		}
	}
	s.recall = float64(caught) / float64(max(1, s.nearPairs))
	s.farMerged = float64(merged) / float64(max(1, s.farPairs))
	s.unrelatedFP = float64(fp) / float64(max(1, unrelated))
	return s
}

// TestNearDupRecall plants near-duplicate and far pairs and checks that
// the stage catches the near ones and leaves the far ones and unrelated
// records alone.
func TestNearDupRecall(t *testing.T) {
	c := makeCorpus(4000, 400, 200, 11)
	p := writeCorpus(t, t.TempDir(), c.recs)
	s := decode(t, "max_tokens = 0\n")
	out := run(t, s, 2, p)
	sc := score(t, c, out["rejected"], &s.cfg)
	t.Logf("near pairs %d recall %.4f; far pairs %d merged %.4f; unrelated FP %.5f", sc.nearPairs, sc.recall, sc.farPairs, sc.farMerged, sc.unrelatedFP)
	if sc.nearPairs < 350 || sc.farPairs < 150 {
		t.Fatalf("only %d planted near pairs reach Jaccard 0.75 and %d far pairs stay below 0.6", sc.nearPairs, sc.farPairs)
	}
	if sc.recall < 0.95 {
		t.Errorf("recall %.3f of planted near-duplicates, want at least 0.95", sc.recall)
	}
	if sc.farMerged > 0.02 {
		t.Errorf("%.3f of far pairs (Jaccard 0.4-0.55) merged, want at most 0.02", sc.farMerged)
	}
	if sc.unrelatedFP > 0.001 {
		t.Errorf("%.4f of unrelated records dropped as near-duplicates", sc.unrelatedFP)
	}
}
