package train

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/pipeml/pipe/ml/tensorboard"
)

// tinyOptions trains the tiny model on packed examples.
func tinyOptions(t *testing.T, m *Model, runDir string) Options {
	trainEx := tinyExamples(1, 48, 6, 20)
	evalEx := tinyExamples(2, 12, 6, 20)
	return Options{
		Backend: testBackend(t), Model: m,
		Train: Pack(trainEx, 32, 1), Eval: Pack(evalEx, 32, 1),
		TrainStats: exampleStats(trainEx), EvalStats: exampleStats(evalEx),
		Epochs: 3, GradAccum: 2, LearningRate: 1e-1, WarmupRatio: 0.1, Schedule: Cosine,
		Optimizer: Optimizer{Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, WeightDecay: 0.01, MaxGradNorm: 1},
		Seed:      7, EvalSteps: 4, KeepCheckpoints: 2, RunDir: runDir, Fingerprint: "tiny",
	}
}

func TestLossFalls(t *testing.T) {
	dir := t.TempDir()
	opts := tinyOptions(t, newTinyModel(t, 1, 0.05), dir)
	rep, err := Train(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := ReadMetrics(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	var first, last *float64
	var evals []float64
	for _, m := range ms {
		if m.Loss != nil {
			if first == nil {
				first = m.Loss
			}
			last = m.Loss
		}
		if m.EvalLoss != nil {
			evals = append(evals, *m.EvalLoss)
		}
	}
	if first == nil || *last > 0.6**first {
		t.Fatalf("training loss went from %v to %v; want a fall of at least 40%%", *first, *last)
	}
	if len(evals) < 2 || evals[len(evals)-1] >= evals[0] {
		t.Fatalf("eval losses %v do not fall", evals)
	}
	if rep.Steps != rep.TotalSteps || rep.TotalSteps != 3*rep.StepsPerEpoch {
		t.Errorf("report: %d of %d steps (%d per epoch)", rep.Steps, rep.TotalSteps, rep.StepsPerEpoch)
	}
	if rep.WarmupSteps != int(math.Ceil(0.1*float64(rep.TotalSteps))) {
		t.Errorf("warm-up %d steps for %d total", rep.WarmupSteps, rep.TotalSteps)
	}
	for _, f := range []string{ReportFile, LossCurveFile, filepath.Join(BestDir, "adapter.safetensors"), filepath.Join(LastDir, "adapter.safetensors")} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if rep.BestEvalLoss == nil || *rep.BestEvalLoss != minOf(evals) {
		t.Errorf("best eval loss %v, evals %v", rep.BestEvalLoss, evals)
	}

	// The event file holds the same numbers as metrics.jsonl.
	ents, _ := os.ReadDir(filepath.Join(dir, TensorBoardDir))
	if len(ents) != 1 || !tensorboard.IsEventFile(ents[0].Name()) {
		t.Fatalf("tensorboard folder holds %v", ents)
	}
	evs, err := tensorboard.ReadFile(filepath.Join(dir, TensorBoardDir, ents[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	byTag := map[string]map[int64]float32{}
	for _, ev := range evs {
		for _, s := range ev.Scalars {
			if byTag[s.Tag] == nil {
				byTag[s.Tag] = map[int64]float32{}
			}
			byTag[s.Tag][ev.Step] = s.Value
		}
	}
	for _, m := range ms {
		if m.Loss != nil && byTag["train/loss"][int64(m.Step)] != float32(*m.Loss) {
			t.Errorf("step %d: event loss %v, metrics %v", m.Step, byTag["train/loss"][int64(m.Step)], *m.Loss)
		}
		if m.EvalLoss != nil && byTag["eval/loss"][int64(m.Step)] != float32(*m.EvalLoss) {
			t.Errorf("step %d: event eval loss %v, metrics %v", m.Step, byTag["eval/loss"][int64(m.Step)], *m.EvalLoss)
		}
	}
	for _, tag := range []string{"train/learning_rate", "train/grad_norm", "train/tokens_per_second", "train/device_memory_gib"} {
		if len(byTag[tag]) != rep.Steps {
			t.Errorf("tag %s has %d events, want %d", tag, len(byTag[tag]), rep.Steps)
		}
	}
}

func minOf(v []float64) float64 {
	m := math.Inf(1)
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func TestEarlyStopping(t *testing.T) {
	// Rule: HF semantics with threshold.
	var p progress
	losses := []float64{1.0, 0.999, 0.9985, 0.5, 0.4995, 0.4994}
	wantCounter := []int{0, 1, 2, 0, 1, 2}
	wantBest := []bool{true, true, true, true, true, true}
	for i, l := range losses {
		best := p.observeEval(l, 0.002, 3)
		if best != wantBest[i] || p.PatienceCounter != wantCounter[i] || p.Stopped {
			t.Fatalf("eval %d (%v): best=%v counter=%d stopped=%v; want best=%v counter=%d", i, l, best, p.PatienceCounter, p.Stopped, wantBest[i], wantCounter[i])
		}
	}
	if p.observeEval(0.6, 0.002, 3); !p.Stopped || *p.BestEvalLoss != 0.4994 {
		t.Fatalf("after a third evaluation without improvement: stopped=%v best=%v", p.Stopped, *p.BestEvalLoss)
	}

	// Loop: with a learning rate of 0 the eval loss never improves, so
	// training stops at the (1+patience)-th evaluation.
	dir := t.TempDir()
	opts := tinyOptions(t, newTinyModel(t, 1, 0), dir)
	opts.LearningRate = 1e-30
	opts.EvalSteps = 2
	opts.EarlyStoppingPatience = 2
	rep, err := Train(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.StoppedEarly || rep.Steps != 6 {
		t.Fatalf("stopped early=%v after %d steps; want true after 6", rep.StoppedEarly, rep.Steps)
	}
	if rep.BestStep != 2 {
		t.Errorf("best step %d, want 2", rep.BestStep)
	}
}

func TestPackingMatchesUnpacked(t *testing.T) {
	m := newTinyModel(t, 3, 0)
	tr, err := newTrainer(testBackend(t), m, DefaultOptimizer)
	if err != nil {
		t.Fatal(err)
	}
	exs := tinyExamples(5, 7, 3, 12)
	// Unpacked: each example alone in a row of its bucket.
	single := make([]float64, len(exs))
	for i := range exs {
		b := Bucket(exs[i:i+1], 32, 1)[0]
		s, n, err := tr.evalBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		if int(n) != exs[i].lossTokens() {
			t.Fatalf("example %d: %v loss tokens, want %d", i, n, exs[i].lossTokens())
		}
		single[i] = s
	}
	// Packed: several documents a row; select each document's targets by
	// its weights and compare.
	packed := Pack(exs, 32, 1)
	found := 0
	for _, b := range packed {
		for seg := int32(1); ; seg++ {
			w := make([]float32, len(b.Weights))
			var ids []int32
			for i := range w {
				if b.Segments[i] == seg {
					w[i] = b.Weights[i]
					ids = append(ids, b.IDs[i])
				}
			}
			if len(ids) == 0 {
				break
			}
			k := -1
			for e := range exs {
				if equalIDs(exs[e].IDs, ids) {
					k = e
				}
			}
			if k < 0 {
				t.Fatalf("packed document %v is no example", ids)
			}
			bb := *b
			bb.Weights = w
			s, _, err := tr.evalBatch(&bb)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(s-single[k]) > 1e-4*math.Max(1, math.Abs(single[k])) {
				t.Errorf("example %d: packed loss %v, alone %v", k, s, single[k])
			}
			found++
		}
	}
	if found != len(exs) || len(packed) >= len(exs) {
		t.Fatalf("found %d of %d examples in %d packed rows", found, len(exs), len(packed))
	}
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func readAdapter(t *testing.T, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, LastDir, "adapter.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestResumeInProcess(t *testing.T) {
	// Uninterrupted.
	full := t.TempDir()
	if _, err := Train(t.Context(), tinyOptions(t, newTinyModel(t, 1, 0.1), full)); err != nil {
		t.Fatal(err)
	}
	// Interrupted after step 5 (between checkpoints: SaveSteps is 4, so
	// the interruption itself writes one), then after step 9, then run
	// to the end, each time with a fresh model as a new process would.
	split := t.TempDir()
	for _, stopAt := range []int{5, 9, 0} {
		ctx, cancel := context.WithCancel(t.Context())
		opts := tinyOptions(t, newTinyModel(t, 1, 0.1), split)
		if stopAt > 0 {
			opts.AfterStep = func(step int) {
				if step == stopAt-1 {
					cancel()
				}
			}
		}
		_, err := Train(ctx, opts)
		cancel()
		if stopAt > 0 && err == nil {
			t.Fatalf("run stopped at %d returned no error", stopAt)
		}
		if stopAt == 0 && err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(readAdapter(t, full), readAdapter(t, split)) {
		t.Fatal("the resumed run's adapter differs from the uninterrupted run's")
	}
	cps, _ := listCheckpoints(filepath.Join(split, CheckpointsDir))
	if len(cps) != 2 {
		t.Errorf("%d checkpoints kept, want 2: %v", len(cps), cps)
	}
}

// TestAccumulationEqualsBigBatch checks that two micro-batches of one row
// accumulated into one step give the same update as one batch of two rows
// (the fused single-program step).
func TestAccumulationEqualsBigBatch(t *testing.T) {
	exs := tinyExamples(11, 8, 10, 30)
	rows := Pack(exs, 32, 1)[:2]
	both := newBatch(2, 32)
	for r, b := range rows {
		copy(both.IDs[r*32:], b.IDs)
		copy(both.Positions[r*32:], b.Positions)
		copy(both.Segments[r*32:], b.Segments)
		copy(both.Targets[r*32:], b.Targets)
		copy(both.Weights[r*32:], b.Weights)
	}
	params := func(batches []*Batch, accum int) []float32 {
		m := newTinyModel(t, 4, 0)
		opts := Options{Backend: testBackend(t), Model: m, Train: batches, Epochs: 1, GradAccum: accum,
			LearningRate: 1e-2, Schedule: Constant, RunDir: t.TempDir(), Seed: 1}
		if _, err := Train(t.Context(), opts); err != nil {
			t.Fatal(err)
		}
		var out []float32
		for _, v := range m.Trainable {
			out = append(out, tensors.MustCopyFlatData[float32](v.MustValue())...)
		}
		return out
	}
	a, b := params(rows, 2), params([]*Batch{both}, 1)
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-6 {
			t.Fatalf("parameter %d: %v accumulated, %v in one batch", i, a[i], b[i])
		}
	}
}
