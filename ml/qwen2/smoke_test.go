package qwen2

import (
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
