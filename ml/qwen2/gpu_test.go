package qwen2

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// The tests in this file need the GPU and run only with QWEN2_GPU=1 and
// GOMLX_BACKEND set to the XLA CUDA plugin; build the binary with
// `go test -c -tags xla` (see README in testdata) and run it on the GPU machine.

func gpuOnly(t *testing.T) compute.Backend {
	if os.Getenv("QWEN2_GPU") != "1" {
		t.Skip("QWEN2_GPU=1 not set")
	}
	return testBackend(t)
}

// randomSource yields normal(0, std) matrices and biases and ones for norm
// weights, each tensor from its own seeded stream (safe for concurrent use).
type randomSource struct {
	cfg  Config
	std  float64
	seed uint64
}

func (r randomSource) Has(string) bool { return true }

func (r randomSource) Float32(name string) ([]int, []float32, error) {
	for i, s := range r.cfg.BaseTensors() {
		if s.Name != name {
			continue
		}
		n := 1
		for _, d := range s.Shape {
			n *= d
		}
		v := make([]float32, n)
		rng := rand.New(rand.NewPCG(r.seed, uint64(i)))
		norm := len(s.Shape) == 1 && !isBias(name)
		for j := range v {
			if norm {
				v[j] = 1 + float32(rng.NormFloat64()*0.05)
			} else {
				v[j] = float32(rng.NormFloat64() * r.std)
			}
		}
		return s.Shape, v, nil
	}
	return nil, nil, fmt.Errorf("no tensor %s", name)
}

// lossGradExec returns an Exec computing (loss sum, weight sum, grads...).
func lossGradExec(t *testing.T, backend compute.Backend, m *Model, training, segments bool) *model.Exec {
	vars := m.TrainableVariables()
	exec, err := model.NewExec(backend, m.Store, func(_ *model.Scope, in []*G.Node) []*G.Node {
		m.Store.SetTraining(in[0].Graph(), training)
		batch := Batch{Tokens: in[0], Positions: in[1], Segments: in[2]}
		if !segments {
			batch.Segments = nil
		}
		l, c := m.Loss(batch, in[3], in[4])
		nodes := make([]*G.Node, len(vars))
		for i, v := range vars {
			nodes[i] = v.NodeValue(in[0].Graph())
		}
		return append([]*G.Node{l, c}, G.Gradient(l, nodes...)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	return exec
}

// packedBatch makes a [1, seq] batch of docs equal-length documents.
func packedBatch(seq, docs, vocab int, seed uint64) fixtureBatch {
	rng := rand.New(rand.NewPCG(seed, 2))
	tok, tgt, pos, seg := make([]int32, seq), make([]int32, seq), make([]int32, seq), make([]int32, seq)
	w := make([]float32, seq)
	per := seq / docs
	for i := range seq {
		tok[i], tgt[i] = int32(rng.IntN(vocab)), int32(rng.IntN(vocab))
		d := min(i/per, docs-1)
		seg[i], pos[i] = int32(d), int32(i-d*per)
		w[i] = 1
	}
	return fixtureBatch{
		tokens: tensors.FromFlatDataAndDimensions(tok, 1, seq), positions: tensors.FromFlatDataAndDimensions(pos, 1, seq),
		segments: tensors.FromFlatDataAndDimensions(seg, 1, seq), targets: tensors.FromFlatDataAndDimensions(tgt, 1, seq),
		weights: tensors.FromFlatDataAndDimensions(w, 1, seq),
	}
}

// TestGPUFusedPackedAttention compares the fused (cuDNN, bias-masked)
// attention path with the plain one in bf16 on a packed batch: loss and
// LoRA gradients.
func TestGPUFusedPackedAttention(t *testing.T) {
	backend := gpuOnly(t)
	cfg := Config{VocabSize: 1000, HiddenSize: 256, IntermediateSize: 512, NumLayers: 2, NumHeads: 4, NumKVHeads: 2,
		HeadDim: 64, RopeTheta: 1e6, RMSNormEps: 1e-6, TieWordEmbeddings: true, AttentionBias: true}
	b := packedBatch(512, 3, cfg.VocabSize, 1)
	var losses []float32
	var grads [][][]float32
	for _, impl := range []AttentionImpl{AttentionAuto, AttentionPlain} {
		m, err := New(cfg, Options{DType: dtypes.BFloat16, Attention: impl})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.LoadBase(randomSource{cfg, 0.05, 1}, 0); err != nil {
			t.Fatal(err)
		}
		if err := m.AddLoRA(LoRAConfig{Rank: 8, Alpha: 16}, 3); err != nil {
			t.Fatal(err)
		}
		for _, v := range m.TrainableVariables() { // non-zero B so every gradient is non-trivial
			vals := tensors.MustCopyFlatData[float32](v.MustValue())
			for i := range vals {
				vals[i] += 0.01 * float32(i%7-3)
			}
			v.MustSetValue(tensors.FromFlatDataAndDimensions(vals, v.Shape().Dimensions...))
		}
		g := lossGradExec(t, backend, m, false, true)
		res, err := g.Exec(b.tokens, b.positions, b.segments, b.targets, b.weights)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, tensors.ToScalar[float32](res[0]))
		var gs [][]float32
		for _, r := range res[2:] {
			gs = append(gs, tensors.MustCopyFlatData[float32](r))
		}
		grads = append(grads, gs)
		t.Logf("attention %v: fused available=%v loss %v", impl, m.useFused(G.NewGraph(backend, "probe")), losses[len(losses)-1])
	}
	worst := 0.0
	for i := range grads[0] {
		worst = max(worst, relErr(grads[0][i], grads[1][i]))
	}
	t.Logf("fused vs plain (bf16, packed 3 docs, S=512): loss %v vs %v (rel %.3g); worst LoRA gradient rel err %.3g",
		losses[0], losses[1], relErr(losses[:1], losses[1:]), worst)
	if relErr(losses[:1], losses[1:]) > 1e-2 || worst > 0.1 {
		t.Errorf("fused and plain attention disagree")
	}
}

// TestGPUFixturesBF16 runs the HF fixtures in bf16 on the GPU (fused
// attention where possible) and reports the error against HF's float32.
func TestGPUFixturesBF16(t *testing.T) {
	backend := gpuOnly(t)
	for _, name := range fixtureModels {
		dir := filepath.Join("testdata", "fixtures", name)
		e := openExpect(t, dir)
		m, err := Load(filepath.Join(dir, "base"), Options{DType: dtypes.BFloat16})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.ImportAdapter(filepath.Join(dir, "adapter")); err != nil {
			t.Fatal(err)
		}
		for _, bn := range []string{"plain", "packed"} {
			got, loss, _ := forwardAndGrads(t, backend, m, loadBatch(e, bn))
			want, _ := e.f32(bn + ".logits_lora")
			wl, _ := e.f32(bn + ".loss")
			r := relErr(got, want)
			t.Logf("%s %s bf16 on GPU: logits rel err %.3g, loss %v vs HF f32 %v", name, bn, r, loss, wl[0])
			if r > 0.05 {
				t.Errorf("%s %s: bf16 logits relative error %.3g > 0.05", name, bn, r)
			}
		}
	}
}

// TestGPU3B loads the Qwen2.5-Coder-3B shape with random weights,
// quantised as $QWEN2_QUANT says, adds LoRA r=32 on all seven projections
// and runs forward+backward steps on a packed 3600-token batch.
func TestGPU3B(t *testing.T) {
	backend := gpuOnly(t)
	q, err := ParseQuantization(os.Getenv("QWEN2_QUANT"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Qwen25Coder3B
	ckpt := os.Getenv("QWEN2_CKPT") != "0"
	m, err := New(cfg, Options{DType: dtypes.BFloat16, Quantization: q, GradientCheckpointing: ckpt})
	if err != nil {
		t.Fatal(err)
	}
	src := randomSource{cfg, 0.02, 1}
	t0 := time.Now()
	for _, s := range cfg.BaseTensors()[:8] { // generation cost alone, for reference
		if _, _, err := src.Float32(s.Name); err != nil {
			t.Fatal(err)
		}
	}
	t1 := time.Now()
	if err := m.LoadBase(src, 0); err != nil {
		t.Fatal(err)
	}
	load := time.Since(t1)
	t.Logf("3B quant=%s: LoadBase (random generation + convert/quantise, %d goroutines) %.1fs; base on device %.2f GB; generation of the first 8 tensors alone %.2fs",
		q, 0, load.Seconds(), float64(m.BaseBytes())/1e9, t1.Sub(t0).Seconds())
	if err := m.AddLoRA(LoRAConfig{Rank: 32, Alpha: 64, Dropout: 0.05}, 1); err != nil {
		t.Fatal(err)
	}
	b := packedBatch(3600, 2, cfg.VocabSize, 7)
	segments := os.Getenv("QWEN2_SEGMENTS") != "0"
	exec := lossGradExec(t, backend, m, true, segments)
	var first time.Duration
	var steps []float64
	for i := range 4 {
		s := time.Now()
		res, err := exec.Exec(b.tokens, b.positions, b.segments, b.targets, b.weights)
		if err != nil {
			t.Fatal(err)
		}
		loss := tensors.ToScalar[float32](res[0]) / tensors.ToScalar[float32](res[1])
		d := time.Since(s)
		if i == 0 {
			first = d
			t.Logf("3B quant=%s: first step (compile + upload + run) %.1fs, mean token loss %.4f", q, d.Seconds(), loss)
		} else {
			steps = append(steps, d.Seconds())
		}
	}
	mean := 0.0
	for _, s := range steps {
		mean += s
	}
	mean /= float64(len(steps))
	t.Logf("3B quant=%s checkpointing=%v packed=%v: forward+backward (LoRA grads, dropout on, no optimiser) %.3f s/step = %.0f tokens/s (steps %v; first %.1fs)",
		q, ckpt, segments, mean, 3600/mean, steps, first.Seconds())
}
