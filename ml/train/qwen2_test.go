package train

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/pipeml/pipe/ml/checkpoint"
	"github.com/pipeml/pipe/ml/qwen2"
)

// TestQwen2Tiny trains LoRA on the tiny random Qwen2 checkpoint (the real
// architecture at hidden size 32, with the real 151,936-token vocabulary)
// for a few steps on packed batches and checks that the loss falls and
// the exported adapter is PEFT's.
func TestQwen2Tiny(t *testing.T) {
	if testing.Short() {
		t.Skip("tiny Qwen2 training takes a few seconds")
	}
	dir, err := checkpoint.EnsureTiny(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m, err := qwen2.Load(dir, qwen2.Options{DType: dtypes.Float32, Quantization: qwen2.QuantInt8})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddLoRA(qwen2.LoRAConfig{Rank: 4, Alpha: 8, Dropout: 0.05}, 1); err != nil {
		t.Fatal(err)
	}
	// Documents that repeat a short phrase: learnable in a few steps.
	var exs []Example
	for d := range 6 {
		ex := Example{}
		for i := range 12 + 3*d {
			ex.IDs = append(ex.IDs, int32(1000+(i%4)*7+d))
			ex.Mask = append(ex.Mask, i >= 2)
		}
		exs = append(exs, ex)
	}
	run := t.TempDir()
	rep, err := Train(t.Context(), Options{
		Backend: testBackend(t), Model: Qwen2(m, "tiny", true),
		Train: Pack(exs, 64, 1), Eval: Pack(exs[:2], 64, 1),
		Epochs: 6, GradAccum: 1, LearningRate: 2e-2, WarmupRatio: 0, Schedule: Constant,
		Seed: 1, RunDir: run, Fingerprint: "qwen2-tiny",
	})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := ReadMetrics(filepath.Join(run, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	// The random base predicts a near-uniform distribution over 151,936
	// tokens (loss about 11.9) and its LM head is frozen, so LoRA moves
	// the loss slowly; it must still fall clearly over six epochs.
	var evals []float64
	for _, x := range ms {
		if x.EvalLoss != nil {
			evals = append(evals, *x.EvalLoss)
		}
	}
	if len(evals) != 6 || evals[len(evals)-1] > evals[0]-0.1 {
		t.Errorf("eval losses %v over %d steps: want 6 evaluations and a fall of at least 0.1", evals, rep.Steps)
	}
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		if _, err := os.Stat(filepath.Join(run, LastDir, f)); err != nil {
			t.Error(err)
		}
	}
}
