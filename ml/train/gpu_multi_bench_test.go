//go:build gpubench

package train

// The data-parallel scaling benchmark: the Qwen2.5-Coder-3B shape (or its
// first BENCH_LAYERS layers, to keep compilation short) with random
// weights, LoRA r=32 on all seven projections, one 3600-token document a
// row, int8 base, gradient checkpointing, trained for BENCH_STEPS steps on
// each device count of BENCH_DEVICES (e.g. "1,2") with grad_accum equal to
// the device count (one micro-batch per device per step, one compiled
// program). It reports the median tokens/s of each and the scaling
// efficiency against the first. Build it with
//
//	go test -c -tags gpubench -o bench/train.test ./ml/train
//
// and run it with PIPE_GPU_BENCH=1 -test.run TestGPUDataParallel on the
// multi-GPU machine (NCCL_NVLS_ENABLE=0 set).

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/pipeml/pipe/ml/qwen2"
)

func TestGPUDataParallel(t *testing.T) {
	if os.Getenv("PIPE_GPU_BENCH") != "1" {
		t.Skip("PIPE_GPU_BENCH=1 not set")
	}
	seq := envInt("BENCH_SEQ", 3600)
	steps := envInt("BENCH_STEPS", 6)
	out := os.Getenv("BENCH_OUT")
	if out == "" {
		out = t.TempDir()
	}
	var counts []int
	for _, f := range strings.Split(cmpOr(os.Getenv("BENCH_DEVICES"), "1,2"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatal(err)
		}
		counts = append(counts, n)
	}
	backend, choice, err := OpenBackend(os.Getenv("BENCH_BACKEND"), "", "preallocate=false")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backend %s: %s, %d devices", choice.Config, backend.Description(), backend.NumDevices())
	cfg := qwen2.Qwen25Coder3B
	if l := envInt("BENCH_LAYERS", 0); l > 0 {
		cfg.NumLayers = l
	}
	results := map[string]any{"seq": seq, "layers": cfg.NumLayers, "steps": steps, "quant": "int8",
		"gradient_checkpointing": true, "backend_devices": backend.NumDevices()}
	var base float64
	for _, n := range counts {
		t0 := time.Now()
		m, err := qwen2.New(cfg, qwen2.Options{DType: dtypes.BFloat16, Quantization: qwen2.QuantInt8, GradientCheckpointing: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.LoadBase(randomBase{cfg}, 0); err != nil {
			t.Fatal(err)
		}
		if err := m.AddLoRA(qwen2.LoRAConfig{Rank: 32, Alpha: 64, Dropout: 0.05}, 1); err != nil {
			t.Fatal(err)
		}
		load := time.Since(t0)
		rng := rand.New(rand.NewPCG(3, 4))
		var exs []Example
		for range steps * n {
			ex := Example{IDs: make([]int32, seq), Mask: make([]bool, seq)}
			for i := range seq {
				ex.IDs[i] = int32(rng.IntN(cfg.VocabSize - 100))
				ex.Mask[i] = i >= seq/2
			}
			exs = append(exs, ex)
		}
		run := filepath.Join(out, fmt.Sprintf("run-dp%d", n))
		os.RemoveAll(run)
		t1 := time.Now()
		rep, err := Train(t.Context(), Options{
			Backend: backend, Model: Qwen2(m, "Qwen/Qwen2.5-Coder-3B-Instruct", false),
			Train: Pack(exs, seq, 1), Epochs: 1, GradAccum: n, Devices: n, LearningRate: 2e-4, WarmupRatio: 0.1,
			Seed: 1, SaveSteps: 1 << 30, KeepCheckpoints: 1, RunDir: run, Fingerprint: "bench",
		})
		if err != nil {
			t.Fatalf("%d devices: %v", n, err)
		}
		ms, err := ReadMetrics(filepath.Join(run, MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		var tps, losses []float64
		var first float64
		for _, x := range ms {
			if x.TokensPerSec != nil && x.Step == 1 {
				first = float64(seq*n) / *x.TokensPerSec
			}
			if x.TokensPerSec != nil && x.Step > 2 {
				tps = append(tps, *x.TokensPerSec)
			}
			if x.Loss != nil {
				losses = append(losses, *x.Loss)
			}
		}
		slices.Sort(tps)
		med := tps[len(tps)/2]
		if base == 0 {
			base = med / float64(n)
		}
		r := map[string]any{"devices": rep.Devices, "tokens_per_s_median": med, "tokens_per_s": tps,
			"scaling_efficiency_vs_first": med / (base * float64(n)), "first_step_s_incl_compile": first,
			"load_quantise_s": load.Seconds(), "run_s": time.Since(t1).Seconds(), "losses": losses,
			"peak_gpu_memory_gib_nvidia_smi": float64(rep.PeakMemory) / (1 << 30)}
		results[fmt.Sprintf("dp%d", n)] = r
		b, _ := json.Marshal(r)
		t.Logf("devices %d: %s", n, b)
		m = nil
	}
	b, _ := json.MarshalIndent(results, "", "  ")
	t.Logf("result %s", b)
	if err := os.WriteFile(filepath.Join(out, "result-dataparallel.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
