package qwen2

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	_ "github.com/gomlx/compute/gobackend"
)

// testBackend returns the backend named by $GOMLX_BACKEND, the pure-Go one
// by default; it never installs anything.
func testBackend(t testing.TB) compute.Backend {
	t.Helper()
	os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
	if os.Getenv("GOMLX_BACKEND") == "" {
		os.Setenv("GOMLX_BACKEND", "go")
	}
	b, err := compute.New()
	if err != nil {
		t.Fatalf("backend: %v", err)
	}
	return b
}

var tinyConfig = Config{
	VocabSize: 97, HiddenSize: 32, IntermediateSize: 48, NumLayers: 2,
	NumHeads: 4, NumKVHeads: 2, HeadDim: 8, RopeTheta: 10000, RMSNormEps: 1e-6,
	TieWordEmbeddings: true, AttentionBias: true,
}

// randomModel fills a model with random weights (norm weights around 1).
func randomModel(t testing.TB, cfg Config, opts Options, seed uint64) *Model {
	t.Helper()
	m, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, spec := range cfg.BaseTensors() {
		n := 1
		for _, d := range spec.Shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.1)
			if len(spec.Shape) == 1 && !isBias(spec.Name) {
				v[i] += 1
			}
		}
		if err := m.SetBaseTensor(spec.Name, spec.Shape, v); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestSmokeForwardBackward(t *testing.T) {
	backend := testBackend(t)
	m := randomModel(t, tinyConfig, Options{DType: dtypes.Float32}, 1)
	if err := m.AddLoRA(LoRAConfig{Rank: 4, Alpha: 8}, 7); err != nil {
		t.Fatal(err)
	}
	tokens := [][]int32{{1, 5, 9, 13, 2, 7, 11, 3}}
	targets := [][]int32{{5, 9, 13, 2, 7, 11, 3, 4}}
	weights := [][]float32{{1, 1, 1, 1, 1, 1, 1, 0}}
	vars := m.TrainableVariables()
	exec, err := model.NewExec(backend, m.Store, func(scope *model.Scope, tok, tgt, w *G.Node) []*G.Node {
		loss, count := m.Loss(Batch{Tokens: tok}, tgt, w)
		logits := m.Logits(Batch{Tokens: tok})
		nodes := make([]*G.Node, len(vars))
		for i, v := range vars {
			nodes[i] = v.NodeValue(tok.Graph())
		}
		grads := G.Gradient(loss, nodes...)
		return append([]*G.Node{loss, count, logits}, grads...)
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Exec(tokens, targets, weights)
	if err != nil {
		t.Fatal(err)
	}
	loss := tensors.ToScalar[float32](out[0])
	if math.IsNaN(float64(loss)) || loss <= 0 {
		t.Fatalf("loss = %v", loss)
	}
	t.Logf("loss %v count %v, %d grads", loss, tensors.ToScalar[float32](out[1]), len(out)-3)
}

// TestLoRADropout checks that dropout is active only in training graphs
// and that it changes the loss.
func TestLoRADropout(t *testing.T) {
	backend := testBackend(t)
	m := randomModel(t, tinyConfig, Options{DType: dtypes.Float32}, 1)
	if err := m.AddLoRA(LoRAConfig{Rank: 4, Alpha: 8, Dropout: 0.5}, 7); err != nil {
		t.Fatal(err)
	}
	for _, v := range m.TrainableVariables() {
		vals := tensors.MustCopyFlatData[float32](v.MustValue())
		for i := range vals {
			vals[i] += 0.05
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(vals, v.Shape().Dimensions...))
	}
	if err := m.Store.SetRNGStateFromSeed(42); err != nil {
		t.Fatal(err)
	}
	b := packedBatch(8, 1, tinyConfig.VocabSize, 1)
	loss := func(training bool) float32 {
		res, err := lossGradExec(t, backend, m, training, false).Exec(b.tokens, b.positions, b.segments, b.targets, b.weights)
		if err != nil {
			t.Fatal(err)
		}
		return tensors.ToScalar[float32](res[0])
	}
	eval1, eval2, train1, train2 := loss(false), loss(false), loss(true), loss(true)
	if eval1 != eval2 {
		t.Errorf("eval loss not deterministic: %v %v", eval1, eval2)
	}
	if train1 == eval1 || train1 == train2 {
		t.Errorf("dropout inactive or RNG state not advancing: eval %v, train %v, %v", eval1, train1, train2)
	}
}

// TestBFloat16PlainPath runs the plain attention path in bfloat16 on the
// CPU and compares it with float32.
func TestBFloat16PlainPath(t *testing.T) {
	backend := testBackend(t)
	b := packedBatch(24, 2, tinyConfig.VocabSize, 4)
	var logits [][]float32
	for _, dt := range []dtypes.DType{dtypes.Float32, dtypes.BFloat16} {
		m := randomModel(t, tinyConfig, Options{DType: dt, Attention: AttentionPlain}, 3)
		if err := m.AddLoRA(LoRAConfig{Rank: 4, Alpha: 8}, 1); err != nil {
			t.Fatal(err)
		}
		l, _, grads := forwardAndGrads(t, backend, m, b)
		if len(grads) != len(m.TrainableVariables()) {
			t.Fatalf("%s: %d gradients", dt, len(grads))
		}
		logits = append(logits, l)
	}
	if r := relErr(logits[1], logits[0]); r > 0.03 {
		t.Errorf("bf16 logits differ from f32 by %.3g", r)
	} else {
		t.Logf("bf16 vs f32 logits: relative error %.3g", r)
	}
}

// TestGradientCheckpointingSameGradients checks that per-layer
// checkpointing changes neither the loss nor the LoRA gradients, with a
// plain and a quantised base and with LoRA dropout on in a training
// graph: under checkpointing the backward pass dequantises the weights
// and draws the dropout masks again, and must get the same ones.
func TestGradientCheckpointingSameGradients(t *testing.T) {
	backend := testBackend(t)
	b := packedBatch(16, 2, tinyConfig.VocabSize, 6)
	for _, c := range []struct {
		quant    Quantization
		dropout  float64
		training bool
	}{{QuantNone, 0, false}, {QuantInt8, 0.3, true}, {QuantNF4, 0.3, true}} {
		t.Run(fmt.Sprintf("%s-dropout%v", c.quant, c.dropout), func(t *testing.T) {
			var losses []float32
			var grads [][][]float32
			for _, ckpt := range []bool{false, true} {
				m := randomModel(t, tinyConfig, Options{DType: dtypes.Float32, Quantization: c.quant, GradientCheckpointing: ckpt}, 5)
				if err := m.AddLoRA(LoRAConfig{Rank: 4, Alpha: 8, Dropout: c.dropout}, 2); err != nil {
					t.Fatal(err)
				}
				for _, v := range m.TrainableVariables() {
					vals := tensors.MustCopyFlatData[float32](v.MustValue())
					for i := range vals {
						vals[i] += 0.03
					}
					v.MustSetValue(tensors.FromFlatDataAndDimensions(vals, v.Shape().Dimensions...))
				}
				if err := m.Store.SetRNGStateFromSeed(42); err != nil {
					t.Fatal(err)
				}
				res, err := lossGradExec(t, backend, m, c.training, true).Exec(b.tokens, b.positions, b.segments, b.targets, b.weights)
				if err != nil {
					t.Fatal(err)
				}
				losses = append(losses, tensors.ToScalar[float32](res[0]))
				var g [][]float32
				for _, r := range res[2:] {
					g = append(g, tensors.MustCopyFlatData[float32](r))
				}
				grads = append(grads, g)
			}
			if losses[0] != losses[1] {
				t.Errorf("loss %v with checkpointing, %v without", losses[1], losses[0])
			}
			if len(grads[0]) == 0 || len(grads[0]) != len(grads[1]) {
				t.Fatalf("%d and %d gradients", len(grads[0]), len(grads[1]))
			}
			for i := range grads[0] {
				if r := relErr(grads[1][i], grads[0][i]); r > 1e-6 {
					t.Errorf("gradient %d: relative error %.3g with checkpointing", i, r)
				}
			}
		})
	}
}

// TestCheckpointingRecomputesDequantAndDropout checks the graph that
// checkpointing builds: the backward pass dequantises every quantised
// weight again and draws every LoRA dropout mask again, rather than
// keeping the forward pass's copies alive (which, for the 3B model, would
// hold every layer's bfloat16 weights and masks at once).
func TestCheckpointingRecomputesDequantAndDropout(t *testing.T) {
	backend := testBackend(t)
	b := packedBatch(16, 2, tinyConfig.VocabSize, 6)
	count := func(ckpt bool) (dequant, draws, modules int) {
		m := randomModel(t, tinyConfig, Options{DType: dtypes.Float32, Quantization: QuantInt8, GradientCheckpointing: ckpt}, 5)
		if err := m.AddLoRA(LoRAConfig{Rank: 4, Alpha: 8, Dropout: 0.1}, 2); err != nil {
			t.Fatal(err)
		}
		_, g, err := lossGradExec(t, backend, m, true, true).ExecWithGraph(b.tokens, b.positions, b.segments, b.targets, b.weights)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range g.Nodes() {
			switch n.Type() {
			case G.NodeTypeConvertDType:
				if in := n.Inputs(); len(in) == 1 && in[0].DType() == dtypes.Int8 {
					dequant++
				}
			case G.NodeTypeRNGBitGenerator:
				draws++
			}
		}
		return dequant, draws, len(m.loraVars)
	}
	dq0, rng0, k := count(false)
	dq1, rng1, _ := count(true)
	if dq0 == 0 || dq1 != 2*dq0 {
		t.Errorf("int8 dequantisations: %d without checkpointing, %d with; want twice as many", dq0, dq1)
	}
	// One split of the Store's state, then per LoRA module a key split and
	// a mask draw; checkpointing adds a second draw per module.
	if rng0 != 1+2*k || rng1 != rng0+k {
		t.Errorf("RNG ops: %d without checkpointing, %d with, for %d LoRA modules; want %d and %d", rng0, rng1, k, 1+2*k, 1+3*k)
	}
}

// TestLayerGradientsFenced checks that the backward pass cannot put off a
// layer's LoRA weight gradients: every LoRA gradient of layer 0 depends
// on every LoRA gradient of layer 1 (through the fence on layer 1's input
// gradient). Without the fence they are independent, and XLA computed
// all of them at the end of the step, holding every layer's activation
// gradients until then.
func TestLayerGradientsFenced(t *testing.T) {
	backend := testBackend(t)
	b := packedBatch(16, 2, tinyConfig.VocabSize, 6)
	for _, ckpt := range []bool{false, true} {
		m := randomModel(t, tinyConfig, Options{DType: dtypes.Float32, Quantization: QuantInt8, GradientCheckpointing: ckpt}, 5)
		if err := m.AddLoRA(LoRAConfig{Rank: 4, Alpha: 8, Dropout: 0.1}, 2); err != nil {
			t.Fatal(err)
		}
		vars := m.TrainableVariables()
		perLayer := len(vars) / tinyConfig.NumLayers
		grads := trainingGradients(t, backend, m, b)
		for _, g0 := range grads[:perLayer] {
			reach := ancestors(g0)
			for j, g1 := range grads[perLayer : 2*perLayer] {
				if !reach[g1.Id()] {
					t.Errorf("checkpointing=%v: layer 0's gradient does not wait for layer 1's gradient of %s", ckpt, vars[perLayer+j].Name())
				}
			}
		}
	}
}

// trainingGradients builds and runs once a training graph (dropout on) of
// m's loss on b and returns the gradient nodes of m's trainable variables,
// for tests that inspect the graph (Node.Graph).
func trainingGradients(t *testing.T, backend compute.Backend, m *Model, b fixtureBatch) []*G.Node {
	t.Helper()
	vars := m.TrainableVariables()
	var grads []*G.Node
	exec, err := model.NewExec(backend, m.Store, func(_ *model.Scope, in []*G.Node) []*G.Node {
		g := in[0].Graph()
		m.Store.SetTraining(g, true)
		l, _ := m.Loss(Batch{Tokens: in[0], Positions: in[1], Segments: in[2]}, in[3], in[4])
		nodes := make([]*G.Node, len(vars))
		for i, v := range vars {
			nodes[i] = v.NodeValue(g)
		}
		grads = G.Gradient(l, nodes...)
		return grads
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.Exec(b.tokens, b.positions, b.segments, b.targets, b.weights); err != nil {
		t.Fatal(err)
	}
	return grads
}

// ancestors returns the ids of n and every node it is computed from.
func ancestors(n *G.Node) map[G.NodeId]bool {
	seen := map[G.NodeId]bool{}
	stack := []*G.Node{n}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[x.Id()] {
			continue
		}
		seen[x.Id()] = true
		stack = append(stack, x.Inputs()...)
	}
	return seen
}
