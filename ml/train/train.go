package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/gomlx/compute"
	"github.com/pipeml/pipe/ml/plot"
	"github.com/pipeml/pipe/ml/tensorboard"
)

// Options configure one training run. Zero values take the defaults in
// brackets.
type Options struct {
	Backend compute.Backend
	Model   *Model
	// Train and Eval are the prepared micro-batches (Pack or Bucket);
	// TrainStats and EvalStats describe how they were made, for the report.
	Train, Eval           []*Batch
	TrainStats, EvalStats DataStats

	Epochs    int // [1]
	GradAccum int // micro-batches per optimiser step [1]
	// Devices runs the step data-parallel on that many of the backend's
	// devices [1]; AllDevices uses every one. The effective batch stays GradAccum
	// micro-batches: each device runs GradAccum/Devices of them per step,
	// so GradAccum must be a multiple of Devices. See devices.go.
	Devices int
	// simulateDevices combines Devices micro-batches into one but runs
	// them on a single device, without a mesh (tests on the pure-Go
	// backend, which has one device).
	simulateDevices bool
	LearningRate    float64 // peak rate [2e-5]
	WarmupRatio     float64
	Schedule        Schedule // [cosine]
	Optimizer       Optimizer
	// MaxSteps stops after this many optimiser steps; 0 runs all epochs.
	// The schedule spans min(MaxSteps, epochs' steps).
	MaxSteps int
	// Seed fixes the data order; the model's dropout RNG is seeded from it
	// too.
	Seed uint64

	// EvalSteps evaluates every EvalSteps optimiser steps (0: only at the
	// end of each epoch, which always happens).
	EvalSteps int
	// EarlyStoppingPatience stops after that many evaluations in a row
	// without an improvement of more than EarlyStoppingThreshold over the
	// best eval loss (0 turns early stopping off).
	EarlyStoppingPatience  int
	EarlyStoppingThreshold float64

	// SaveSteps writes a checkpoint every SaveSteps optimiser steps [the
	// same as EvalSteps, or every epoch]; KeepCheckpoints keeps the newest
	// so many [2].
	SaveSteps, KeepCheckpoints int

	// RunDir holds checkpoints/, tensorboard/, metrics.jsonl, best/,
	// last/, loss.png and training_report.json. A run finds its latest
	// checkpoint there and resumes from it when Fingerprint matches.
	RunDir      string
	Fingerprint string

	Logger *slog.Logger
	// Progress receives the progress bar (usually os.Stderr); nil for none.
	Progress io.Writer
	// Memory samples device memory; nil picks NewMemorySampler's.
	Memory MemorySampler
	// AfterStep, when set, is called after each optimiser step and its
	// bookkeeping (checkpoint included). Tests use it to interrupt a run.
	AfterStep func(step int)
}

// Report is training_report.json.
type Report struct {
	Backend        string    `json:"backend"`
	Devices        int       `json:"devices"`
	Train          DataStats `json:"train"`
	Eval           DataStats `json:"eval"`
	MicroBatches   int       `json:"micro_batches_per_epoch"`
	StepsPerEpoch  int       `json:"steps_per_epoch"`
	TotalSteps     int       `json:"total_steps"`
	WarmupSteps    int       `json:"warmup_steps"`
	Steps          int       `json:"steps"`
	Epochs         float64   `json:"epochs"`
	StoppedEarly   bool      `json:"stopped_early"`
	ResumedAtStep  int       `json:"resumed_at_step,omitempty"`
	BestEvalLoss   *float64  `json:"best_eval_loss,omitempty"`
	BestStep       int       `json:"best_step,omitempty"`
	LastEvalLoss   *float64  `json:"last_eval_loss,omitempty"`
	LastTrainLoss  *float64  `json:"last_train_loss,omitempty"`
	Tokens         int64     `json:"tokens"`
	TokensPerSec   float64   `json:"tokens_per_second"`
	PeakMemory     int64     `json:"peak_device_memory_bytes"`
	TrainSeconds   float64   `json:"train_seconds"`
	BestAdapterDir string    `json:"best_adapter_dir"`
	LastAdapterDir string    `json:"last_adapter_dir"`
}

// The files and folders Train writes in Options.RunDir.
const (
	CheckpointsDir = "checkpoints"
	TensorBoardDir = "tensorboard"
	MetricsFile    = "metrics.jsonl"
	BestDir        = "best"
	LastDir        = "last"
	LossCurveFile  = "loss.png"
	ReportFile     = "training_report.json"
)

// ErrInterrupted is wrapped by the error Train returns when ctx ends
// before training is done. The run's latest checkpoint stays in RunDir;
// calling Train again with the same options resumes from it.
var ErrInterrupted = errors.New("training interrupted")

func (o *Options) defaults() {
	if o.Epochs <= 0 {
		o.Epochs = 1
	}
	if o.GradAccum <= 0 {
		o.GradAccum = 1
	}
	if o.Devices == 0 {
		o.Devices = 1
	}
	if o.LearningRate == 0 {
		o.LearningRate = 2e-5
	}
	if o.Schedule == "" {
		o.Schedule = Cosine
	}
	if o.Optimizer == (Optimizer{}) {
		o.Optimizer = DefaultOptimizer
	}
	if o.SaveSteps <= 0 {
		o.SaveSteps = o.EvalSteps
	}
	if o.KeepCheckpoints == 0 {
		o.KeepCheckpoints = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Train runs (or resumes) training and writes its results into
// opts.RunDir. It returns an error wrapping ErrInterrupted when ctx ends
// first; the checkpoint written at the step boundary where it stopped lets
// a later call resume.
func Train(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	if opts.Backend == nil || opts.Model == nil {
		return nil, errors.New("train: no backend or model")
	}
	if len(opts.Train) == 0 {
		return nil, errors.New("train: no training data (every record was dropped or the train split is empty)")
	}
	if opts.RunDir == "" {
		return nil, errors.New("train: no run folder")
	}
	if err := os.MkdirAll(opts.RunDir, 0o755); err != nil {
		return nil, err
	}
	log := opts.Logger
	ndev, err := opts.Devices, error(nil)
	if opts.simulateDevices {
		if opts.GradAccum%ndev != 0 {
			return nil, fmt.Errorf("grad_accum %d is not a multiple of %d devices", opts.GradAccum, ndev)
		}
	} else if ndev, err = resolveDevices(opts.Backend, opts.Devices, opts.GradAccum); err != nil {
		return nil, err
	}
	dp, err := newDataParallel(ndev, opts.simulateDevices)
	if err != nil {
		return nil, err
	}
	t, err := newParallelTrainer(opts.Backend, opts.Model, opts.Optimizer, dp)
	if err != nil {
		return nil, err
	}
	if err := opts.Model.Store.SetRNGStateFromSeed(int64(opts.Seed)); err != nil {
		return nil, err
	}

	n := len(opts.Train)
	stepsPerEpoch := (n + opts.GradAccum - 1) / opts.GradAccum
	total := stepsPerEpoch * opts.Epochs
	if opts.MaxSteps > 0 && opts.MaxSteps < total {
		total = opts.MaxSteps
	}
	warmup := WarmupSteps(opts.WarmupRatio, total)
	rep := &Report{
		Backend: opts.Backend.Name(), Devices: dp.n, Train: opts.TrainStats, Eval: opts.EvalStats,
		MicroBatches: n, StepsPerEpoch: stepsPerEpoch, TotalSteps: total, WarmupSteps: warmup,
		BestAdapterDir: BestDir, LastAdapterDir: LastDir,
	}
	batchStats(&rep.Train, opts.Train)
	batchStats(&rep.Eval, opts.Eval)

	// Resume.
	ckDir := filepath.Join(opts.RunDir, CheckpointsDir)
	p := progress{Fingerprint: opts.Fingerprint}
	removeStale(ckDir)
	cps, err := listCheckpoints(ckDir)
	if err != nil {
		return nil, err
	}
	if len(cps) > 0 {
		last := filepath.Join(ckDir, cps[len(cps)-1])
		p, err = t.loadCheckpoint(last)
		if err != nil {
			return nil, err
		}
		if p.Fingerprint != opts.Fingerprint {
			return nil, fmt.Errorf("%s was written by a run with other data or settings (fingerprint %q, this run %q); remove %s to start over",
				last, p.Fingerprint, opts.Fingerprint, opts.RunDir)
		}
		rep.ResumedAtStep = p.Step
		log.Info("resuming", "checkpoint", last, "step", p.Step)
	}

	mf, err := openMetrics(filepath.Join(opts.RunDir, MetricsFile), p.Step)
	if err != nil {
		return nil, err
	}
	defer mf.Close()
	menc := json.NewEncoder(mf)
	tb, err := tensorboard.Create(filepath.Join(opts.RunDir, TensorBoardDir))
	if err != nil {
		return nil, err
	}
	defer tb.Close()
	mem := opts.Memory
	if mem == nil {
		mem = NewMemorySampler(ctx, opts.Backend.Name()+" "+opts.Backend.Description())
	}
	if mem != nil {
		defer mem.Close()
	}
	sampleMem := func() (int64, int64) {
		if mem == nil {
			return 0, 0
		}
		return mem.Sample()
	}
	bar := newProgressBar(opts.Progress, total)

	emit := func(m Metric) error {
		m.Time = time.Now().UTC().Format(time.RFC3339Nano)
		if err := menc.Encode(m); err != nil {
			return err
		}
		at := time.Now()
		scalars := []struct {
			tag string
			v   *float64
		}{
			{"train/loss", m.Loss}, {"train/learning_rate", m.LearningRate}, {"train/grad_norm", m.GradNorm},
			{"train/tokens_per_second", m.TokensPerSec}, {"eval/loss", m.EvalLoss},
		}
		for _, s := range scalars {
			if s.v != nil {
				if err := tb.ScalarAt(s.tag, int64(m.Step), *s.v, at); err != nil {
					return err
				}
			}
		}
		if m.DeviceMemory > 0 {
			if err := tb.ScalarAt("train/device_memory_gib", int64(m.Step), float64(m.DeviceMemory)/(1<<30), at); err != nil {
				return err
			}
			if err := tb.ScalarAt("train/peak_device_memory_gib", int64(m.Step), float64(m.PeakDeviceMemory)/(1<<30), at); err != nil {
				return err
			}
		}
		return tb.Flush()
	}

	// evaluate runs the eval split and applies Hugging Face's early
	// stopping rule; it saves the best adapter on an improvement.
	evaluate := func() error {
		if len(opts.Eval) == 0 {
			return nil
		}
		loss, err := t.evaluate(opts.Eval)
		if err != nil {
			return err
		}
		rep.LastEvalLoss = f64(loss)
		if p.observeEval(loss, opts.EarlyStoppingThreshold, opts.EarlyStoppingPatience) {
			if err := saveAdapter(opts.Model, filepath.Join(opts.RunDir, BestDir)); err != nil {
				return err
			}
		}
		bar.message("eval step %d: loss %.4f (best %.4f at step %d)", p.Step, loss, *p.BestEvalLoss, p.BestStep)
		log.Info("eval", "step", p.Step, "loss", loss, "best", *p.BestEvalLoss)
		return emit(Metric{Step: p.Step, Epoch: epochOf(p, n), EvalLoss: f64(loss), BestEvalLoss: f64(*p.BestEvalLoss)})
	}

	runStart := time.Now()
	elapsedBefore := p.Elapsed
	tokensBefore := p.Tokens
	done := func() bool { return p.Stopped || p.Step >= total || p.Epoch >= opts.Epochs }
	for !done() {
		order := epochOrder(opts.Seed, p.Epoch, n)
		for p.Micro < n && !done() {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("%w at step %d of %d: %v", ErrInterrupted, p.Step, total, context.Cause(ctx))
			}
			stepStart := time.Now()
			k := min(opts.GradAccum, n-p.Micro)
			tokens := 0
			// The step's micro-batches run n at a time, one per device.
			// With grad_accum = n (1 on one device) the micro-batches and
			// the update are one program; otherwise each group
			// accumulates and a small program applies the update.
			bs := make([]*Batch, k)
			for j := range k {
				bs[j] = opts.Train[order[p.Micro+j]]
				tokens += bs[j].Tokens()
			}
			var last *Batch
			if opts.GradAccum == dp.n {
				last = combine(bs, dp.n)
			} else {
				for _, g := range dp.groups(bs) {
					if err := t.microStep(combine(g, dp.n)); err != nil {
						return nil, fmt.Errorf("step %d: %w", p.Step+1, err)
					}
				}
			}
			lr := LearningRate(opts.Schedule, opts.LearningRate, p.Step, warmup, total)
			res, err := t.optimizerStep(p.Step+1, lr, last)
			if err != nil {
				return nil, fmt.Errorf("step %d: %w", p.Step+1, err)
			}
			dt := time.Since(stepStart).Seconds()
			p.Step++
			p.Micro += k
			p.Tokens += int64(tokens)
			p.Elapsed = elapsedBefore + time.Since(runStart).Seconds()
			if p.Micro == n {
				p.Epoch++
				p.Micro = 0
			}
			if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
				return nil, fmt.Errorf("step %d: the loss is %v (learning rate %g); lower learning_rate or check the data", p.Step, res.Loss, lr)
			}
			cur, peak := sampleMem()
			tps := float64(tokens) / dt
			rep.LastTrainLoss = f64(res.Loss)
			if err := emit(Metric{
				Step: p.Step, Epoch: epochOf(p, n), Loss: f64(res.Loss), LearningRate: f64(lr),
				GradNorm: f64(res.GradNorm), TokensPerSec: f64(tps), Tokens: p.Tokens,
				DeviceMemory: cur, PeakDeviceMemory: peak,
			}); err != nil {
				return nil, err
			}
			avg := float64(p.Tokens-tokensBefore) / max(1e-9, time.Since(runStart).Seconds())
			eta := time.Duration(float64(total-p.Step) * float64(time.Since(runStart)) / float64(max(1, p.Step-rep.ResumedAtStep)))
			bar.update(p.Step, res.Loss, avg, eta, false)

			epochEnd := p.Micro == 0
			if epochEnd || (opts.EvalSteps > 0 && p.Step%opts.EvalSteps == 0) {
				if err := evaluate(); err != nil {
					return nil, err
				}
			}
			interrupted := ctx.Err() != nil
			if interrupted || done() || epochEnd || (opts.SaveSteps > 0 && p.Step%opts.SaveSteps == 0) {
				if err := t.saveCheckpoint(ckDir, p, opts.KeepCheckpoints); err != nil {
					return nil, fmt.Errorf("checkpoint at step %d: %w", p.Step, err)
				}
			}
			if opts.AfterStep != nil {
				opts.AfterStep(p.Step)
			}
		}
	}
	if bar != nil && p.Step > rep.ResumedAtStep {
		bar.update(p.Step, derefOr(rep.LastTrainLoss, math.NaN()), float64(p.Tokens-tokensBefore)/max(1e-9, time.Since(runStart).Seconds()), 0, true)
	}

	// The last adapter; the best one too when there was no evaluation.
	if err := saveAdapter(opts.Model, filepath.Join(opts.RunDir, LastDir)); err != nil {
		return nil, err
	}
	if len(opts.Eval) == 0 {
		if err := saveAdapter(opts.Model, filepath.Join(opts.RunDir, BestDir)); err != nil {
			return nil, err
		}
	}
	rep.Steps = p.Step
	rep.Epochs = epochOf(p, n)
	rep.StoppedEarly = p.Stopped
	rep.BestEvalLoss, rep.BestStep = p.BestEvalLoss, p.BestStep
	rep.Tokens = p.Tokens
	rep.TrainSeconds = p.Elapsed
	if p.Elapsed > 0 {
		rep.TokensPerSec = float64(p.Tokens) / p.Elapsed
	}
	_, rep.PeakMemory = sampleMem()
	if err := writeReport(opts.RunDir, rep); err != nil {
		return nil, err
	}
	if err := writeLossCurve(opts.RunDir); err != nil {
		return nil, err
	}
	return rep, nil
}

func derefOr(v *float64, d float64) float64 {
	if v == nil {
		return d
	}
	return *v
}

func epochOf(p progress, n int) float64 {
	return float64(p.Epoch) + float64(p.Micro)/float64(n)
}

// saveAdapter exports the model's adapter into dir atomically.
func saveAdapter(m *Model, dir string) error {
	if m.SaveAdapter == nil {
		return errors.New("the model cannot export its adapter")
	}
	parent := filepath.Dir(dir)
	tmp, err := os.MkdirTemp(parent, ".tmp-"+filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := m.SaveAdapter(tmp); err != nil {
		return fmt.Errorf("export adapter: %w", err)
	}
	old := dir + ".old"
	os.RemoveAll(old)
	if _, err := os.Stat(dir); err == nil {
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

func writeReport(dir string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ReportFile), append(b, '\n'), 0o644)
}

// writeLossCurve draws loss.png from metrics.jsonl.
func writeLossCurve(dir string) error {
	ms, err := ReadMetrics(filepath.Join(dir, MetricsFile))
	if err != nil {
		return err
	}
	var tr, ev []plot.Point
	for _, m := range ms {
		if m.Loss != nil {
			tr = append(tr, plot.Point{X: float64(m.Step), Y: *m.Loss})
		}
		if m.EvalLoss != nil {
			ev = append(ev, plot.Point{X: float64(m.Step), Y: *m.EvalLoss})
		}
	}
	return plot.LossCurve(tr, ev).WritePNG(filepath.Join(dir, LossCurveFile))
}

// observeEval applies an evaluation's loss to the early-stopping state
// with Hugging Face's semantics and reports whether it is a new best.
// EarlyStoppingCallback.check_metric_value compares with the best metric
// before this evaluation and needs an improvement of more than threshold
// to reset the patience counter; the Trainer's best metric (and its best
// checkpoint) moves on any strict improvement. Training stops once the
// counter reaches patience (patience 0: never).
func (p *progress) observeEval(loss, threshold float64, patience int) (best bool) {
	if p.BestEvalLoss == nil || (loss < *p.BestEvalLoss && math.Abs(loss-*p.BestEvalLoss) > threshold) {
		p.PatienceCounter = 0
	} else {
		p.PatienceCounter++
	}
	if p.BestEvalLoss == nil || loss < *p.BestEvalLoss {
		p.BestEvalLoss, p.BestStep = f64(loss), p.Step
		best = true
	}
	if patience > 0 && p.PatienceCounter >= patience {
		p.Stopped = true
	}
	return best
}

// removeStale deletes the temporary folders of checkpoints that a killed
// run left half-written.
func removeStale(dir string) {
	ms, _ := filepath.Glob(filepath.Join(dir, ".tmp-checkpoint-*"))
	for _, m := range ms {
		os.RemoveAll(m)
	}
}
