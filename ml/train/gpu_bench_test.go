//go:build gpubench

package train

// The GPU benchmark of the training step: the Qwen2.5-Coder-3B shape with
// random weights, LoRA r=32 on all seven projections, packed 3600-token
// rows, int8 or NF4 base, through the whole loop (micro-step, AdamW step,
// metrics, TensorBoard, checkpoint, PEFT export). Build it with
//
//	go test -c -tags gpubench -o bench/train.test ./ml/train
//
// and run it on the GPU machine with PIPE_GPU_BENCH=1 (see
// bench/gpu_train.sh, which also runs the Hugging Face baseline in the
// same call).

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	_ "github.com/gomlx/go-xla/compute/xla"
	"github.com/pipeml/pipe/ml/qwen2"
	"k8s.io/klog/v2"
)

// BENCH_KLOG_V=1 turns on go-xla's compile log, which gives each
// program's compile time and XLA's static memory needs (arguments,
// outputs, aliases, temporaries): the footprint the allocator must hold
// at the program's peak, comparable with torch's max_memory_allocated.
func init() {
	if v := os.Getenv("BENCH_KLOG_V"); v != "" {
		fs := flag.NewFlagSet("klog", flag.ContinueOnError)
		klog.InitFlags(fs)
		_ = fs.Set("v", v)
	}
}

// randomBase yields normal(0, 0.02) weights (windows of one shared pool
// of normal samples, at a different offset for each tensor: the step's
// speed does not depend on the values, and drawing 3 billion fresh samples
// would take longer than the benchmark), zero biases and norm weights 1.
type randomBase struct{ cfg qwen2.Config }

var normalPool = sync.OnceValue(func() []float32 {
	rng := rand.New(rand.NewPCG(7, 7))
	v := make([]float32, 1<<22)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * 0.02)
	}
	return v
})

func (r randomBase) Has(string) bool { return true }

func (r randomBase) Float32(name string) ([]int, []float32, error) {
	pool := normalPool()
	for i, s := range r.cfg.BaseTensors() {
		if s.Name != name {
			continue
		}
		n := 1
		for _, d := range s.Shape {
			n *= d
		}
		v := make([]float32, n)
		norm := len(s.Shape) == 1 && filepath.Ext(name) == ".weight"
		if norm {
			for j := range v {
				v[j] = 1
			}
		} else if len(s.Shape) > 1 {
			for off := 0; off < n; {
				start := (i*7919 + off*31) % (len(pool) / 2)
				off += copy(v[off:], pool[start:])
			}
		}
		return s.Shape, v, nil
	}
	return nil, nil, fmt.Errorf("no tensor %s", name)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func TestGPUTrainStep(t *testing.T) {
	if os.Getenv("PIPE_GPU_BENCH") != "1" {
		t.Skip("PIPE_GPU_BENCH=1 not set")
	}
	quant, err := qwen2.ParseQuantization(os.Getenv("BENCH_QUANT"))
	if err != nil {
		t.Fatal(err)
	}
	ckpt := os.Getenv("BENCH_CKPT") != "0"
	seq := envInt("BENCH_SEQ", 3600)
	steps := envInt("BENCH_STEPS", 8)
	accum := envInt("BENCH_ACCUM", 1)
	out := os.Getenv("BENCH_OUT")
	if out == "" {
		out = t.TempDir()
	}
	backend, choice, err := OpenBackend(os.Getenv("BENCH_BACKEND"), "", "preallocate=false")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backend %s (%s): %s", choice.Config, choice.Reason, backend.Description())

	cfg := qwen2.Qwen25Coder3B
	dtype := dtypes.BFloat16
	if os.Getenv("BENCH_TINY") == "1" { // a CPU check of this code path
		cfg = qwen2.Config{VocabSize: 512, HiddenSize: 64, IntermediateSize: 128, NumLayers: 2, NumHeads: 4, NumKVHeads: 2,
			HeadDim: 16, RopeTheta: 1e6, RMSNormEps: 1e-6, TieWordEmbeddings: true, AttentionBias: true}
		dtype = dtypes.Float32
	}
	// BENCH_LAYERS keeps the first layers only (shorter compilation, for
	// A/B measurements of a layer's cost); BENCH_DROPOUT sets LoRA dropout.
	if l := envInt("BENCH_LAYERS", 0); l > 0 {
		cfg.NumLayers = l
	}
	dropout := 0.05
	if v, err := strconv.ParseFloat(os.Getenv("BENCH_DROPOUT"), 64); err == nil {
		dropout = v
	}
	t0 := time.Now()
	m, err := qwen2.New(cfg, qwen2.Options{DType: dtype, Quantization: quant, GradientCheckpointing: ckpt})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadBase(randomBase{cfg}, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.AddLoRA(qwen2.LoRAConfig{Rank: 32, Alpha: 64, Dropout: dropout}, 1); err != nil {
		t.Fatal(err)
	}
	load := time.Since(t0)
	fmt.Fprintf(os.Stderr, "load and quantise %.1fs, base %.2f GB on the device\n", load.Seconds(), float64(m.BaseBytes())/1e9)

	// BENCH_PACKED=1: packed rows of documents of random lengths (100 to
	// 1500 tokens), with segment ids in the attention mask; otherwise one
	// document per row, plain causal attention (what the Hugging Face
	// baseline runs). Random ids, loss on the second half of each document.
	packed := os.Getenv("BENCH_PACKED") == "1"
	rng := rand.New(rand.NewPCG(3, 4))
	var exs []Example
	for range steps * accum * 6 {
		l := min(seq/2, 100+rng.IntN(1400))
		if !packed {
			l = seq
		}
		ex := Example{IDs: make([]int32, l), Mask: make([]bool, l)}
		for i := range l {
			ex.IDs[i] = int32(rng.IntN(cfg.VocabSize - 100))
			ex.Mask[i] = i >= l/2
		}
		exs = append(exs, ex)
	}
	batches := Pack(exs, seq, 1)[:steps*accum]
	name := fmt.Sprintf("%s-ckpt%v-packed%v-l%d-d%v", quant, ckpt, packed, cfg.NumLayers, dropout)
	run := filepath.Join(out, "run-"+name)
	os.RemoveAll(run)
	rep, err := Train(t.Context(), Options{
		Backend: backend, Model: Qwen2(m, "Qwen/Qwen2.5-Coder-3B-Instruct", packed),
		Train: batches, Epochs: 1, GradAccum: accum, LearningRate: 2e-4, WarmupRatio: 0.1,
		Seed: 1, SaveSteps: 1 << 30, KeepCheckpoints: 1, RunDir: run, Fingerprint: "bench",
		Progress: os.Stderr,
		// One line a step, so that a run cut short still reports.
		AfterStep: func(step int) {
			if ms, err := ReadMetrics(filepath.Join(run, MetricsFile)); err == nil && len(ms) > 0 {
				b, _ := json.Marshal(ms[len(ms)-1])
				fmt.Fprintf(os.Stderr, "after %.1fs: %s\n", time.Since(t0).Seconds(), b)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := ReadMetrics(filepath.Join(run, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	// Steady state: every step after the first two (compilation).
	var tps []float64
	var losses []float64
	for _, x := range ms {
		if x.TokensPerSec != nil && x.Step > 2 {
			tps = append(tps, *x.TokensPerSec)
		}
		if x.Loss != nil {
			losses = append(losses, *x.Loss)
		}
	}
	slices.Sort(tps)
	mean := 0.0
	for _, v := range tps {
		mean += v
	}
	mean /= float64(max(1, len(tps)))
	res := map[string]any{
		"quant": string(quant), "gradient_checkpointing": ckpt, "packed": packed, "seq": seq, "accum": accum,
		"steps": rep.Steps, "tokens_per_s_mean": mean, "tokens_per_s_median": tps[len(tps)/2],
		"peak_gpu_memory_gib_nvidia_smi": float64(rep.PeakMemory) / (1 << 30),
		"load_quantise_s":                load.Seconds(), "train_s": rep.TrainSeconds, "losses": losses,
		"base_bytes": m.BaseBytes(), "backend": choice.Config, "layers": cfg.NumLayers, "dropout": dropout,
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("result %s", b)
	if err := os.WriteFile(filepath.Join(out, "result-"+name+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
