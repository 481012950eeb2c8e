package train

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"

	"github.com/pipeml/pipe/artifacts"
)

// Encoder turns a dataset record into token ids and a loss mask of the same
// length (true where the model learns the token). tokenizer.EncodeRecord
// is the real one.
type Encoder func(rec *artifacts.Record, trainOnAll bool) (ids []int32, lossMask []bool, err error)

// Example is one tokenised record.
type Example struct {
	IDs  []int32
	Mask []bool
}

// Overlong says what happens to examples longer than the sequence length.
type Overlong string

// The ways to handle an example longer than MaxLen.
const (
	// Truncate keeps the first MaxLen tokens.
	Truncate Overlong = "truncate"
	// Drop leaves the example out.
	Drop Overlong = "drop"
)

// DataStats counts what happened to the records of one split.
type DataStats struct {
	Records   int `json:"records"`
	Examples  int `json:"examples"`
	Truncated int `json:"truncated"`
	// Dropped counts records left out, by reason: "too_long" (Overlong is
	// Drop), "no_loss_tokens" (nothing to learn, e.g. a chat without an
	// assistant turn or a completion cut away by truncation) and
	// "too_short" (fewer than two tokens).
	Dropped map[string]int `json:"dropped,omitempty"`
	// Tokens is the number of tokens kept; LossTokens the number of
	// targets the loss is computed on.
	Tokens     int `json:"tokens"`
	LossTokens int `json:"loss_tokens"`
	// Sequences is the number of rows (packed sequences or bucketed
	// examples) and PadTokens the padding they carry.
	Sequences int `json:"sequences"`
	PadTokens int `json:"pad_tokens"`
}

func (s *DataStats) drop(reason string) {
	if s.Dropped == nil {
		s.Dropped = map[string]int{}
	}
	s.Dropped[reason]++
}

// LoadExamples reads the JSONL record files at paths, in order, and
// tokenises each record with enc. Records longer than maxLen tokens are
// truncated or dropped as overlong says.
func LoadExamples(paths []string, enc Encoder, trainOnAll bool, maxLen int, overlong Overlong) ([]Example, DataStats, error) {
	var (
		out   []Example
		stats DataStats
	)
	if maxLen < 2 {
		return nil, stats, fmt.Errorf("max length %d is too small", maxLen)
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, stats, err
		}
		rr := artifacts.NewRecordReader(f, p)
		for {
			rec, err := rr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				return nil, stats, err
			}
			stats.Records++
			ids, mask, err := enc(rec, trainOnAll)
			if err != nil {
				f.Close()
				return nil, stats, fmt.Errorf("%s:%d: %v", p, rr.Line(), err)
			}
			if len(ids) != len(mask) {
				f.Close()
				return nil, stats, fmt.Errorf("%s:%d: encoder returned %d ids and %d mask entries", p, rr.Line(), len(ids), len(mask))
			}
			if len(ids) > maxLen {
				if overlong == Drop {
					stats.drop("too_long")
					continue
				}
				ids, mask = ids[:maxLen], mask[:maxLen]
				stats.Truncated++
			}
			if len(ids) < 2 {
				stats.drop("too_short")
				continue
			}
			ex := Example{IDs: ids, Mask: mask}
			n := ex.lossTokens()
			if n == 0 {
				stats.drop("no_loss_tokens")
				continue
			}
			stats.Examples++
			stats.Tokens += len(ids)
			stats.LossTokens += n
			out = append(out, ex)
		}
		if err := f.Close(); err != nil {
			return nil, stats, err
		}
	}
	return out, stats, nil
}

// lossTokens is the number of targets with a loss: positions t whose next
// token t+1 is masked in.
func (e *Example) lossTokens() int {
	n := 0
	for _, m := range e.Mask[1:] {
		if m {
			n++
		}
	}
	return n
}

// Batch is one micro-batch: Rows sequences of Len tokens each, flattened
// row-major. Position ids restart at 0 for each document; Segments number
// the documents of a row from 1 (0 is padding) so that attention never
// crosses a document boundary; Targets[t] is the token that follows
// position t in its document, with Weights[t] 1 where the loss counts it and
// 0 elsewhere (unlearned tokens, the last token of each document, padding).
type Batch struct {
	Rows, Len int
	IDs       []int32
	Positions []int32
	Segments  []int32
	Targets   []int32
	Weights   []float32
	// Docs is the number of documents in the batch.
	Docs int
}

// Tokens is the number of non-padding tokens in the batch.
func (b *Batch) Tokens() int {
	n := 0
	for _, s := range b.Segments {
		if s != 0 {
			n++
		}
	}
	return n
}

// LossTokens is the number of targets with a loss.
func (b *Batch) LossTokens() int {
	n := 0
	for _, w := range b.Weights {
		if w != 0 {
			n++
		}
	}
	return n
}

func newBatch(rows, length int) *Batch {
	n := rows * length
	return &Batch{
		Rows: rows, Len: length,
		IDs: make([]int32, n), Positions: make([]int32, n), Segments: make([]int32, n),
		Targets: make([]int32, n), Weights: make([]float32, n),
	}
}

// place writes ex into row r of b starting at column off as document seg.
func (b *Batch) place(r, off int, seg int32, ex *Example) {
	base := r*b.Len + off
	for t, id := range ex.IDs {
		i := base + t
		b.IDs[i] = id
		b.Positions[i] = int32(t)
		b.Segments[i] = seg
		if t+1 < len(ex.IDs) {
			b.Targets[i] = ex.IDs[t+1]
			if ex.Mask[t+1] {
				b.Weights[i] = 1
			}
		}
	}
	b.Docs++
}

// Pack places examples into rows of exactly seqLen tokens by best-fit
// decreasing (longest first, each into the fullest row where it fits) and
// groups rows into batches of rowsPerBatch. The order of the returned
// batches is deterministic for the same examples; shuffling is the loop's.
func Pack(examples []Example, seqLen, rowsPerBatch int) []*Batch {
	order := make([]int, len(examples))
	for i := range order {
		order[i] = i
	}
	// Longest first; ties in input order, so the result does not depend on
	// the sort algorithm.
	sort.SliceStable(order, func(a, b int) bool {
		return len(examples[order[a]].IDs) > len(examples[order[b]].IDs)
	})
	type row struct {
		used int
		docs []int
	}
	var rows []*row
	for _, i := range order {
		n := len(examples[i].IDs)
		best := -1
		for r, rw := range rows {
			if rw.used+n <= seqLen && (best < 0 || rw.used > rows[best].used) {
				best = r
			}
		}
		if best < 0 {
			rows = append(rows, &row{})
			best = len(rows) - 1
		}
		rows[best].used += n
		rows[best].docs = append(rows[best].docs, i)
	}
	var batches []*Batch
	for start := 0; start < len(rows); start += rowsPerBatch {
		end := min(start+rowsPerBatch, len(rows))
		b := newBatch(rowsPerBatch, seqLen)
		for r, rw := range rows[start:end] {
			off := 0
			for d, i := range rw.docs {
				b.place(r, off, int32(d+1), &examples[i])
				off += len(examples[i].IDs)
			}
		}
		batches = append(batches, b)
	}
	return batches
}

// Buckets returns the sequence lengths used without packing: powers of two
// from 64 up to below maxLen, then maxLen.
func Buckets(maxLen int) []int {
	var out []int
	for l := 64; l < maxLen; l *= 2 {
		out = append(out, l)
	}
	return append(out, maxLen)
}

// Bucket pads each example to the smallest bucket length that holds it and
// groups examples of the same bucket, in input order, into batches of
// rowsPerBatch rows (the last batch of a bucket may have empty rows). Few
// distinct shapes means few compiled programs.
func Bucket(examples []Example, maxLen, rowsPerBatch int) []*Batch {
	buckets := Buckets(maxLen)
	byLen := map[int][]int{}
	for i := range examples {
		n := len(examples[i].IDs)
		k, _ := slices.BinarySearch(buckets, n)
		byLen[buckets[k]] = append(byLen[buckets[k]], i)
	}
	var batches []*Batch
	for _, l := range buckets {
		idx := byLen[l]
		for start := 0; start < len(idx); start += rowsPerBatch {
			b := newBatch(rowsPerBatch, l)
			for r, i := range idx[start:min(start+rowsPerBatch, len(idx))] {
				b.place(r, 0, 1, &examples[i])
			}
			batches = append(batches, b)
		}
	}
	return batches
}

// epochOrder is the order in which an epoch visits n micro-batches: a
// permutation drawn from the seed and the epoch number alone, so that a
// resumed run sees the same order without storing it.
func epochOrder(seed uint64, epoch, n int) []int {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15^uint64(epoch)))
	return r.Perm(n)
}

// batchStats fills the row and padding counts of stats from batches.
func batchStats(stats *DataStats, batches []*Batch) {
	stats.Sequences, stats.PadTokens = 0, 0
	for _, b := range batches {
		for r := range b.Rows {
			if b.Segments[r*b.Len] != 0 {
				stats.Sequences++
			}
		}
		stats.PadTokens += b.Rows*b.Len - b.Tokens()
	}
}
