package train

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipeml/pipe/artifacts"
)

// charEncoder tokenises the prompt and completion of a record one byte a
// token; the mask covers the completion (or everything).
func charEncoder(rec *artifacts.Record, all bool) ([]int32, []bool, error) {
	if rec.Prompt == "" && rec.Completion == "" {
		return nil, nil, fmt.Errorf("empty record")
	}
	var ids []int32
	var mask []bool
	for _, c := range []byte(rec.Prompt) {
		ids, mask = append(ids, int32(c)), append(mask, all)
	}
	for _, c := range []byte(rec.Completion) {
		ids, mask = append(ids, int32(c)), append(mask, true)
	}
	return ids, mask, nil
}

func writeRecords(t *testing.T, recs ...artifacts.Record) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "train.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := artifacts.NewRecordWriter(f)
	for i := range recs {
		w.Write(&recs[i])
	}
	w.Flush()
	f.Close()
	return path
}

func TestLoadExamples(t *testing.T) {
	path := writeRecords(t,
		artifacts.Record{Prompt: "abc", Completion: "de"},
		artifacts.Record{Prompt: "abcdefgh", Completion: "ij"}, // 10 tokens: too long
		artifacts.Record{Prompt: "abcdefgh", Completion: ""},   // no loss tokens (unless all)
		artifacts.Record{Prompt: "x"},                          // too short
	)
	exs, st, err := LoadExamples([]string{path}, charEncoder, false, 8, Drop)
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) != 1 || st.Records != 4 || st.Dropped["too_long"] != 1 || st.Dropped["no_loss_tokens"] != 1 || st.Dropped["too_short"] != 1 {
		t.Fatalf("drop: %d examples, stats %+v", len(exs), st)
	}
	if st.Tokens != 5 || st.LossTokens != 2 {
		t.Errorf("tokens %d, loss tokens %d; want 5, 2", st.Tokens, st.LossTokens)
	}
	// Truncation keeps the first 8 tokens, so the completion of the
	// second record is cut away and the record has nothing to learn.
	exs, st, err = LoadExamples([]string{path}, charEncoder, false, 8, Truncate)
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) != 1 || st.Truncated != 1 || st.Dropped["no_loss_tokens"] != 2 {
		t.Fatalf("truncate: %d examples, stats %+v", len(exs), st)
	}
	// Training on everything keeps them.
	exs, st, err = LoadExamples([]string{path}, charEncoder, true, 9, Truncate)
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) != 3 || st.Truncated != 1 {
		t.Fatalf("train on all: %d examples, stats %+v", len(exs), st)
	}
	if _, _, err := LoadExamples([]string{path + ".missing"}, charEncoder, false, 8, Drop); err == nil {
		t.Error("a missing file gave no error")
	}
	bad := writeRecords(t, artifacts.Record{Prompt: "ab", Completion: "c"}, artifacts.Record{})
	if _, _, err := LoadExamples([]string{bad}, charEncoder, false, 8, Drop); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Errorf("encoder error %v does not name the line", err)
	}
}

// checkBatch verifies the invariants of a batch against the examples it
// holds: targets are the next token of the same document, weights are the
// next token's mask, positions restart, padding is inert.
func checkBatch(t *testing.T, b *Batch, exs []Example) (docs int) {
	t.Helper()
	for r := range b.Rows {
		row := func(a []int32) []int32 { return a[r*b.Len : (r+1)*b.Len] }
		ids, pos, seg, tgt := row(b.IDs), row(b.Positions), row(b.Segments), row(b.Targets)
		w := b.Weights[r*b.Len : (r+1)*b.Len]
		for start := 0; start < b.Len && seg[start] != 0; {
			end := start
			for end < b.Len && seg[end] == seg[start] {
				end++
			}
			doc := ids[start:end]
			var ex *Example
			for i := range exs {
				if equalIDs(exs[i].IDs, doc) {
					ex = &exs[i]
				}
			}
			if ex == nil {
				t.Fatalf("row %d holds %v, which is no example", r, doc)
			}
			for i := range doc {
				if pos[start+i] != int32(i) {
					t.Fatalf("position %d of a document is %d", i, pos[start+i])
				}
				wantW := float32(0)
				if i+1 < len(doc) && ex.Mask[i+1] {
					wantW = 1
				}
				if w[start+i] != wantW {
					t.Fatalf("weight of position %d is %v, want %v (mask of the next token)", i, w[start+i], wantW)
				}
				if wantW == 1 && tgt[start+i] != doc[i+1] {
					t.Fatalf("target of position %d is %d, want %d", i, tgt[start+i], doc[i+1])
				}
			}
			docs++
			start = end
		}
		for i := range b.Len {
			if seg[i] == 0 && w[i] != 0 {
				t.Fatalf("padding at %d has weight %v", i, w[i])
			}
		}
	}
	return docs
}

func TestPackAndBucket(t *testing.T) {
	exs := tinyExamples(9, 40, 3, 30)
	packed := Pack(exs, 32, 2)
	docs := 0
	for _, b := range packed {
		if b.Rows != 2 || b.Len != 32 {
			t.Fatalf("packed batch is %dx%d", b.Rows, b.Len)
		}
		docs += checkBatch(t, b, exs)
	}
	if docs != len(exs) {
		t.Fatalf("packed %d documents of %d", docs, len(exs))
	}
	var tokens, capacity int
	for _, b := range packed {
		tokens += b.Tokens()
		capacity += b.Rows * b.Len
	}
	if float64(tokens)/float64(capacity) < 0.85 {
		t.Errorf("packing fills only %d of %d slots", tokens, capacity)
	}

	bucketed := Bucket(exs, 100, 1)
	shapes := map[int]bool{}
	docs = 0
	for _, b := range bucketed {
		shapes[b.Len] = true
		docs += checkBatch(t, b, exs)
	}
	if docs != len(exs) || len(shapes) > len(Buckets(100)) {
		t.Fatalf("bucketing: %d documents, lengths %v", docs, shapes)
	}
	if got := Buckets(3600); got[0] != 64 || got[len(got)-1] != 3600 || len(got) != 7 {
		t.Errorf("Buckets(3600) = %v", got)
	}
}

func TestEpochOrder(t *testing.T) {
	a, b := epochOrder(1, 0, 50), epochOrder(1, 0, 50)
	c := epochOrder(1, 1, 50)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("the same seed and epoch gave two orders")
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatal("two epochs share an order")
	}
}

func TestLearningRate(t *testing.T) {
	// transformers' get_cosine_schedule_with_warmup at lr 2e-5, 10 steps
	// with 1 warm-up step: 0 at step 0, peak at 1, half way at 5.5.
	const peak = 2e-5
	if got := LearningRate(Cosine, peak, 0, 1, 10); got != 0 {
		t.Errorf("step 0: %g", got)
	}
	if got := LearningRate(Cosine, peak, 1, 1, 10); got != peak {
		t.Errorf("step 1: %g", got)
	}
	if got := LearningRate(Linear, peak, 10, 1, 10); got != 0 {
		t.Errorf("linear end: %g", got)
	}
	if got, want := LearningRate(Cosine, peak, 4, 2, 10), peak*0.5*(1+cosPi(2.0/8)); !near(got, want) {
		t.Errorf("cosine step 4: %g, want %g", got, want)
	}
	if WarmupSteps(0.1, 33) != 4 {
		t.Errorf("WarmupSteps(0.1, 33) = %d, want 4", WarmupSteps(0.1, 33))
	}
}

func cosPi(x float64) float64 { return math.Cos(math.Pi * x) }

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }
