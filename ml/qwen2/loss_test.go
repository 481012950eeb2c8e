package qwen2

import (
	"testing"

	"github.com/gomlx/compute/dtypes"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// TestChunkedLossMatchesNaive compares Loss (vocabulary chunks, gradient
// attached through the hidden states) with plain autodiff of a
// cross-entropy over the full float32 logits.
func TestChunkedLossMatchesNaive(t *testing.T) {
	backend := testBackend(t)
	m := randomModel(t, tinyConfig, Options{DType: dtypes.Float32, LossChunk: 30}, 2)
	if err := m.AddLoRA(LoRAConfig{Rank: 4, Alpha: 8}, 5); err != nil {
		t.Fatal(err)
	}
	for _, v := range m.TrainableVariables() {
		vals := tensors.MustCopyFlatData[float32](v.MustValue())
		for i := range vals {
			vals[i] += 0.02 * float32(i%5-2)
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(vals, v.Shape().Dimensions...))
	}
	b := packedBatch(12, 2, tinyConfig.VocabSize, 9)
	w := tensors.MustCopyFlatData[float32](b.weights)
	w[3], w[7] = 0, 0.5
	b.weights = tensors.FromFlatDataAndDimensions(w, 1, 12)
	vars := m.TrainableVariables()
	exec, err := model.NewExec(backend, m.Store, func(_ *model.Scope, in []*G.Node) []*G.Node {
		g := in[0].Graph()
		batch := Batch{Tokens: in[0], Positions: in[1], Segments: in[2]}
		nodes := make([]*G.Node, len(vars))
		for i, v := range vars {
			nodes[i] = v.NodeValue(g)
		}
		chunked, _ := m.Loss(batch, in[3], in[4])
		logits := m.Logits(batch) // [1, S, V]
		mx := G.StopGradient(G.ReduceAndKeep(logits, G.ReduceMax, -1))
		lse := G.Add(G.Log(G.ReduceSum(G.Exp(G.Sub(logits, mx)), -1)), G.Squeeze(mx, -1))
		tgt := G.ReduceSum(G.Mul(logits, G.OneHot(in[3], m.Config.VocabSize, dtypes.Float32)), -1)
		naive := G.ReduceAllSum(G.Mul(G.Sub(lse, tgt), in[4]))
		out := []*G.Node{chunked, naive}
		out = append(out, G.Gradient(chunked, nodes...)...)
		return append(out, G.Gradient(naive, nodes...)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := exec.Exec(b.tokens, b.positions, b.segments, b.targets, b.weights)
	if err != nil {
		t.Fatal(err)
	}
	c, n := tensors.ToScalar[float32](res[0]), tensors.ToScalar[float32](res[1])
	if r := relErr([]float32{c}, []float32{n}); r > 1e-5 {
		t.Errorf("chunked loss %v, naive %v", c, n)
	}
	k := len(vars)
	worst := 0.0
	for i := range k {
		worst = max(worst, relErr(tensors.MustCopyFlatData[float32](res[2+i]), tensors.MustCopyFlatData[float32](res[2+k+i])))
	}
	if worst > 1e-4 {
		t.Errorf("chunked loss gradients differ from naive: worst relative error %.3g", worst)
	}
	t.Logf("loss %v vs %v; worst gradient relative error %.3g over %d variables", c, n, worst, k)
}

// TestLossChunksRunOneAfterAnother checks that each vocabulary chunk's
// logits wait for the previous chunk's reduction (a scheduling barrier per
// chunk after the first), so that XLA cannot hold every chunk's logits at
// once: with chunk 30 and vocabulary 97, four chunks and three barriers.
func TestLossChunksRunOneAfterAnother(t *testing.T) {
	backend := testBackend(t)
	m := randomModel(t, tinyConfig, Options{DType: dtypes.Float32, LossChunk: 30}, 2)
	if err := m.AddLoRA(LoRAConfig{Rank: 4, Alpha: 8}, 5); err != nil {
		t.Fatal(err)
	}
	b := packedBatch(12, 2, tinyConfig.VocabSize, 9)
	_, g, err := lossGradExec(t, backend, m, true, true).ExecWithGraph(b.tokens, b.positions, b.segments, b.targets, b.weights)
	if err != nil {
		t.Fatal(err)
	}
	barriers := 0
	for _, n := range g.Nodes() {
		// The chunk barriers hold the embedding chunk [chunk, hidden]
		// (the layers' gradient fences hold [B, S, hidden]).
		if n.Type() == G.NodeTypeSchedulingBarrier && n.Inputs()[0].Rank() == 2 {
			barriers++
		}
	}
	chunks := (tinyConfig.VocabSize + 29) / 30
	if barriers != chunks-1 {
		t.Errorf("%d scheduling barriers in the loss graph, want %d (one per chunk after the first)", barriers, chunks-1)
	}
}
