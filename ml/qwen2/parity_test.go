package qwen2

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/pipeml/pipe/ml/safetensors"
)

// The fixtures come from testdata/make_fixtures.py (transformers + peft,
// float32). Each folder holds a base checkpoint, a peft adapter and the
// expected logits, loss gradients and greedy generation.
var fixtureModels = []string{"qwen2_bias_tied", "llama_nobias_untied"}

const fixtureTol = 1e-4

type expectFile struct {
	t *testing.T
	f *safetensors.File
}

func openExpect(t *testing.T, dir string) *expectFile {
	f, err := safetensors.Open(filepath.Join(dir, "expect.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &expectFile{t, f}
}

func (e *expectFile) f32(name string) ([]float32, []int) {
	x, ok := e.f.Tensor(name)
	if !ok {
		e.t.Fatalf("fixture has no %s", name)
	}
	v, err := x.Float32()
	if err != nil {
		e.t.Fatal(err)
	}
	return v, x.Shape
}

func (e *expectFile) i32(name string) ([]int32, []int) {
	x, ok := e.f.Tensor(name)
	if !ok {
		e.t.Fatalf("fixture has no %s", name)
	}
	v, err := x.Int64s()
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]int32, len(v))
	for i, y := range v {
		out[i] = int32(y)
	}
	return out, x.Shape
}

// relErr is max|got-want| / max|want|.
func relErr(got, want []float32) float64 {
	var maxDiff, maxRef float64
	for i := range want {
		maxDiff = max(maxDiff, math.Abs(float64(got[i])-float64(want[i])))
		maxRef = max(maxRef, math.Abs(float64(want[i])))
	}
	if maxRef == 0 {
		return maxDiff
	}
	return maxDiff / maxRef
}

// fixtureBatch holds one recorded batch as tensors.
type fixtureBatch struct {
	tokens, positions, segments, targets *tensors.Tensor
	weights                              *tensors.Tensor
}

func loadBatch(e *expectFile, name string) fixtureBatch {
	get := func(k string) *tensors.Tensor {
		v, shape := e.i32(name + "." + k)
		return tensors.FromFlatDataAndDimensions(v, shape...)
	}
	w, shape := e.f32(name + ".weights")
	return fixtureBatch{get("tokens"), get("positions"), get("segments"), get("targets"), tensors.FromFlatDataAndDimensions(w, shape...)}
}

// forwardAndGrads returns logits, the loss sum and the gradients of the loss
// sum with respect to the trainable variables, in TrainableVariables order.
func forwardAndGrads(t *testing.T, backend compute.Backend, m *Model, b fixtureBatch) (logits []float32, loss float32, grads [][]float32) {
	vars := m.TrainableVariables()
	exec, err := model.NewExec(backend, m.Store, func(_ *model.Scope, in []*G.Node) []*G.Node {
		batch := Batch{Tokens: in[0], Positions: in[1], Segments: in[2]}
		out := []*G.Node{m.Logits(batch)}
		if len(vars) > 0 {
			l, _ := m.Loss(batch, in[3], in[4])
			nodes := make([]*G.Node, len(vars))
			for i, v := range vars {
				nodes[i] = v.NodeValue(in[0].Graph())
			}
			out = append(out, l)
			out = append(out, G.Gradient(l, nodes...)...)
		}
		return out
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := exec.Exec(b.tokens, b.positions, b.segments, b.targets, b.weights)
	if err != nil {
		t.Fatal(err)
	}
	logits = tensors.MustCopyFlatData[float32](res[0])
	if len(vars) > 0 {
		loss = tensors.ToScalar[float32](res[1])
		for _, r := range res[2:] {
			grads = append(grads, tensors.MustCopyFlatData[float32](r))
		}
	}
	return
}

func TestHFParity(t *testing.T) {
	backend := testBackend(t)
	for _, name := range fixtureModels {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "fixtures", name)
			if _, err := os.Stat(dir); err != nil {
				t.Fatalf("fixtures missing: run testdata/make_fixtures.py (%v)", err)
			}
			e := openExpect(t, dir)
			m, err := Load(filepath.Join(dir, "base"), Options{DType: dtypes.Float32, Attention: AttentionPlain})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := e.f.Tensor("rope.inv_freq"); ok {
				inv, _ := e.f32("rope.inv_freq")
				for i, v := range inv {
					want := 1 / math.Pow(m.Config.RopeTheta, float64(2*i)/float64(m.Config.HeadDim))
					if math.Abs(float64(v)-want) > 1e-6*want {
						t.Fatalf("rope theta %g does not give HF's inv_freq[%d] = %g", m.Config.RopeTheta, i, v)
					}
				}
			}
			for _, bn := range []string{"plain", "packed"} {
				b := loadBatch(e, bn)
				got, _, _ := forwardAndGrads(t, backend, m, b)
				want, _ := e.f32(bn + ".logits_base")
				if r := relErr(got, want); r > fixtureTol {
					t.Errorf("%s base logits: relative error %.3g > %g", bn, r, fixtureTol)
				} else {
					t.Logf("%s base logits: relative error %.3g", bn, r)
				}
			}

			if err := m.ImportAdapter(filepath.Join(dir, "adapter")); err != nil {
				t.Fatal(err)
			}
			for _, bn := range []string{"plain", "packed"} {
				b := loadBatch(e, bn)
				got, loss, grads := forwardAndGrads(t, backend, m, b)
				want, _ := e.f32(bn + ".logits_lora")
				if r := relErr(got, want); r > fixtureTol {
					t.Errorf("%s LoRA logits: relative error %.3g > %g", bn, r, fixtureTol)
				} else {
					t.Logf("%s LoRA logits: relative error %.3g", bn, r)
				}
				wantLoss, _ := e.f32(bn + ".loss")
				if r := relErr([]float32{loss}, wantLoss); r > fixtureTol {
					t.Errorf("%s loss %v, want %v", bn, loss, wantLoss[0])
				}
				worst := 0.0
				i := 0
				for l := range m.Config.NumLayers {
					for _, p := range m.lora.Targets {
						for _, which := range []string{"lora_A", "lora_B"} {
							key := bn + ".grad." + peftKey(projModule(l, p), which)
							wantG, _ := e.f32(key)
							r := relErr(grads[i], wantG)
							worst = max(worst, r)
							if r > fixtureTol {
								t.Errorf("%s: relative error %.3g > %g", key, r, fixtureTol)
							}
							i++
						}
					}
				}
				t.Logf("%s loss %v (want %v); %d LoRA gradients, worst relative error %.3g", bn, loss, wantLoss[0], len(grads), worst)
			}

			prompt, _ := e.i32("gen.prompt")
			wantGen, _ := e.i32("gen.greedy")
			gen := m.NewGenerator(backend)
			cached, err := gen.Generate(prompt, GenerateOptions{MaxNewTokens: len(wantGen)})
			if err != nil {
				t.Fatal(err)
			}
			uncached, err := gen.Generate(prompt, GenerateOptions{MaxNewTokens: len(wantGen), NoCache: true})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cached, wantGen) || !slices.Equal(uncached, wantGen) {
				t.Errorf("greedy generation:\n KV cache  %v\n no cache  %v\n HF        %v", cached, uncached, wantGen)
			}
			if d := os.Getenv("QWEN2_EXPORT_DIR"); d != "" {
				exportRoundTrip(t, backend, filepath.Join(dir, "base"), loadBatch(e, "plain"), filepath.Join(d, name))
			}
		})
	}
}

// exportRoundTrip builds a fresh Go-initialised adapter (random non-zero
// B), and writes into out: adapter/ (ExportAdapter), merged/ (WriteMerged,
// float32) and go_logits.safetensors (the Go model's logits with the
// adapter on the "plain" batch), for check_export.py to compare with peft
// and transformers.
func exportRoundTrip(t *testing.T, backend compute.Backend, base string, b fixtureBatch, out string) {
	m, err := Load(base, Options{DType: dtypes.Float32, Attention: AttentionPlain})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddLoRA(LoRAConfig{Rank: 6, Alpha: 12, Targets: []string{ProjQ, ProjK, ProjO, ProjUp, ProjDown}}, 99); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	for _, v := range m.TrainableVariables() {
		if filepath.Base(v.Name()) != "lora_B" && v.Name() != "lora_B" {
			continue
		}
		vals := tensors.MustCopyFlatData[float32](v.MustValue())
		for i := range vals {
			vals[i] = float32(rng.NormFloat64() * 0.05)
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(vals, v.Shape().Dimensions...))
	}
	if err := m.ExportAdapter(filepath.Join(out, "adapter"), base); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteMerged(filepath.Join(out, "merged"), base, safetensors.F32, 0); err != nil {
		t.Fatal(err)
	}
	logits, _, _ := forwardAndGrads(t, backend, m, b)
	shape := b.tokens.Shape().Dimensions
	err = safetensors.Write(filepath.Join(out, "go_logits.safetensors"), []safetensors.Entry{
		{Name: "logits", DType: safetensors.F32, Shape: []int{shape[0], shape[1], m.Config.VocabSize}, Data: safetensors.Float32Bytes(logits)},
		{Name: "tokens", DType: safetensors.I32, Shape: shape, Data: int32Bytes(tensors.MustCopyFlatData[int32](b.tokens))},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	// The round trip must also hold in Go.
	m2, err := Load(base, Options{DType: dtypes.Float32, Attention: AttentionPlain})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.ImportAdapter(filepath.Join(out, "adapter")); err != nil {
		t.Fatal(err)
	}
	again, _, _ := forwardAndGrads(t, backend, m2, b)
	if r := relErr(again, logits); r > 1e-6 {
		t.Errorf("adapter export/import round trip: relative error %.3g", r)
	}
	merged, err := Load(filepath.Join(out, "merged"), Options{DType: dtypes.Float32, Attention: AttentionPlain})
	if err != nil {
		t.Fatal(err)
	}
	mergedLogits, _, _ := forwardAndGrads(t, backend, merged, b)
	if r := relErr(mergedLogits, logits); r > fixtureTol {
		t.Errorf("merged checkpoint: relative error %.3g", r)
	} else {
		t.Logf("merged checkpoint (Go): relative error %.3g", r)
	}
}

func int32Bytes(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		u := uint32(x)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}
