package eval

import (
	"context"
	"slices"

	"github.com/gomlx/compute"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/pipeml/pipe/ml/qwen2"
	"github.com/pipeml/pipe/ml/train"
)

// lossRunner computes per-example loss sums with one compiled program per
// (rows, length) shape.
type lossRunner struct {
	m       *qwen2.Model
	backend compute.Backend
	execs   map[[2]int]*model.Exec
}

func newLossRunner(m *qwen2.Model, backend compute.Backend) *lossRunner {
	return &lossRunner{m: m, backend: backend, execs: map[[2]int]*model.Exec{}}
}

// lossBatch is rows examples padded to one length.
type lossBatch struct {
	rows, length int
	examples     []int // indices into the example list; len <= rows
}

// planBatches groups examples by the smallest bucket length (ml/train's
// Buckets: powers of two from 64, then maxLen) that holds them, in input
// order within a bucket, rows at a time: the same shapes as training
// without packing, so few programs compile.
func planBatches(examples []lossExample, maxLen, rows int) []lossBatch {
	buckets := train.Buckets(maxLen)
	byLen := map[int][]int{}
	for i, ex := range examples {
		k, _ := slices.BinarySearch(buckets, len(ex.ids))
		byLen[buckets[k]] = append(byLen[buckets[k]], i)
	}
	var out []lossBatch
	for _, l := range buckets {
		idx := byLen[l]
		for start := 0; start < len(idx); start += rows {
			out = append(out, lossBatch{rows: rows, length: l, examples: idx[start:min(start+rows, len(idx))]})
		}
	}
	return out
}

// run returns, for each example of b, the sum of the cross-entropies of
// the tokens its mask selects (the targets t+1 with mask[t+1], as in
// training).
func (r *lossRunner) run(ctx context.Context, examples []lossExample, b lossBatch) ([]float64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key := [2]int{b.rows, b.length}
	e := r.execs[key]
	if e == nil {
		var err error
		e, err = model.NewExec(r.backend, r.m.Store, func(_ *model.Scope, in []*G.Node) *G.Node {
			tl := r.m.TokenLosses(qwen2.Batch{Tokens: in[0]}, in[1]) // [rows, length] float32
			return G.ReduceSum(G.Mul(tl, in[2]), 1)
		})
		if err != nil {
			return nil, err
		}
		r.execs[key] = e
	}
	n := b.rows * b.length
	ids, targets, weights := make([]int32, n), make([]int32, n), make([]float32, n)
	for row, i := range b.examples {
		ex := &examples[i]
		base := row * b.length
		copy(ids[base:], ex.ids)
		for t := 0; t+1 < len(ex.ids); t++ {
			targets[base+t] = ex.ids[t+1]
			if ex.mask[t+1] {
				weights[base+t] = 1
			}
		}
	}
	res, err := e.Exec(
		tensors.FromFlatDataAndDimensions(ids, b.rows, b.length),
		tensors.FromFlatDataAndDimensions(targets, b.rows, b.length),
		tensors.FromFlatDataAndDimensions(weights, b.rows, b.length))
	if err != nil {
		return nil, err
	}
	sums := tensors.MustCopyFlatData[float32](res[0])
	out := make([]float64, len(b.examples))
	for row := range b.examples {
		out[row] = float64(sums[row])
	}
	return out, nil
}

// lossTokens is the number of targets with a loss in ex.
func (ex *lossExample) lossTokens() int {
	n := 0
	for _, m := range ex.mask[1:] {
		if m {
			n++
		}
	}
	return n
}
