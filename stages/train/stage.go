package train

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
	"github.com/zeebo/blake3"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/ml/checkpoint"
	"github.com/pipeml/pipe/ml/hub"
	"github.com/pipeml/pipe/ml/qwen2"
	"github.com/pipeml/pipe/ml/safetensors"
	mltrain "github.com/pipeml/pipe/ml/train"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/tokenizer"
)

// Definition is the `train` stage kind.
var Definition = &stages.Definition{
	Name:    "train",
	Version: "1",
	Doc:     doc,
	Spec:    stages.ParamSpec(params),
	Inputs: []stages.InputSpec{
		{Name: "train", Required: true, List: true, Doc: "Training records (JSONL files), e.g. the split stage's `train` output."},
		{Name: "eval", List: true, Doc: "Evaluation records (JSONL files), e.g. the split stage's `eval` output. Without them there is no evaluation and no early stopping; the best adapter is the last."},
		{Name: "model", Doc: "A Hugging Face checkpoint folder (config.json, safetensors, tokenizer files) to fine-tune; overrides `base_model`."},
	},
	Outputs:   outputs(false),
	OutputsOf: func(cfg cty.Value) []stages.OutputSpec { return outputs(cfg.GetAttr("merged").True()) },
	New:       newStage,
}

func outputs(merged bool) []stages.OutputSpec {
	out := []stages.OutputSpec{
		{Name: "adapter", Kind: stages.Dir, Doc: "The best adapter (lowest eval loss) in PEFT's format: adapter_config.json and adapter_model.safetensors."},
		{Name: "last_adapter", Kind: stages.Dir, Doc: "The adapter after the last step, in PEFT's format."},
		{Name: "tokenizer", Kind: stages.Dir, Doc: "The tokenizer files the data was encoded with."},
		{Name: "report", Kind: stages.File, Doc: "training_report.json: data counts (records, examples, truncated, dropped by reason, tokens, sequences, padding), steps, epochs, best eval loss and step, whether training stopped early, tokens/s, peak device memory, training time."},
		{Name: "metrics", Kind: stages.File, Doc: "metrics.jsonl: one line per optimiser step (loss, learning rate, gradient norm, tokens/s, tokens, device memory) and per evaluation (eval loss, best eval loss)."},
		{Name: "tensorboard", Kind: stages.Dir, Doc: "TensorBoard event files with the same numbers (`tensorboard --logdir` on this folder)."},
		{Name: "loss_curve", Kind: stages.File, Doc: "loss.png: training and eval loss against the optimiser step."},
	}
	if merged {
		out = append(out, stages.OutputSpec{Name: "merged", Kind: stages.Dir, Doc: "The base model with the best adapter merged in: a full checkpoint that transformers and vLLM load."})
	}
	return out
}

func newStage(v cty.Value) (stages.Stage, hcl.Diagnostics) {
	var c config
	if err := gocty.FromCtyValue(v, &c); err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid train parameters", Detail: err.Error()}}
	}
	var diags hcl.Diagnostics
	bad := func(name, detail string) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for " + name, Detail: detail})
	}
	if _, err := qwen2.ParseQuantization(c.Quantization); err != nil {
		bad("quantization", "quantization must be \"int8\", \"nf4\" or \"none\".")
	}
	switch c.DType {
	case "auto", "bfloat16", "float32":
	default:
		bad("dtype", "dtype must be \"auto\", \"bfloat16\" or \"float32\".")
	}
	if _, err := mltrain.ParseSchedule(c.LRScheduler); err != nil {
		bad("lr_scheduler", "lr_scheduler must be \"cosine\", \"linear\" or \"constant\".")
	}
	switch mltrain.Overlong(c.Overlong) {
	case mltrain.Truncate, mltrain.Drop:
	default:
		bad("overlong", "overlong must be \"truncate\" or \"drop\".")
	}
	lora := c.loraConfig()
	if err := lora.Validate(); err != nil {
		bad("lora_r", "The LoRA settings are invalid: "+err.Error()+".")
	}
	positive := []struct {
		name string
		v    int
	}{{"batch_size", c.BatchSize}, {"grad_accum", c.GradAccum}, {"epochs", c.Epochs}}
	for _, p := range positive {
		if p.v < 1 {
			bad(p.name, p.name+" must be at least 1.")
		}
	}
	if c.Devices < 0 {
		bad("devices", "devices must be 0 (all devices) or a positive number.")
	} else if c.Devices > 1 && c.GradAccum%c.Devices != 0 {
		bad("devices", "grad_accum must be a multiple of devices: each device runs grad_accum/devices micro-batches per optimiser step.")
	}
	if c.MaxLen < 16 {
		bad("max_len", "max_len must be at least 16 tokens.")
	}
	if c.LearningRate <= 0 {
		bad("learning_rate", "learning_rate must be positive.")
	}
	if c.WarmupRatio < 0 || c.WarmupRatio > 1 {
		bad("warmup_ratio", "warmup_ratio must be between 0 and 1.")
	}
	if c.MaxSteps < 0 || c.EvalSteps < 0 || c.SaveSteps < 0 || c.EarlyStoppingPatience < 0 || c.KeepCheckpoints < 0 {
		bad("max_steps", "max_steps, eval_steps, save_steps, early_stopping_patience and keep_checkpoints must not be negative.")
	}
	if c.MergedDType != "BF16" && c.MergedDType != "F32" {
		bad("merged_dtype", "merged_dtype must be \"BF16\" or \"F32\".")
	}
	if c.RunDir == "" {
		bad("run_dir", "run_dir must name a folder.")
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return &stage{cfg: c, raw: v}, nil
}

func (c *config) loraConfig() qwen2.LoRAConfig {
	return qwen2.LoRAConfig{Rank: c.LoraR, Alpha: c.LoraAlpha, Dropout: c.LoraDropout, Targets: c.LoraTargets, RSLoRA: c.UseRSLoRA}
}

type stage struct {
	cfg config
	raw cty.Value
}

// modelDir finds the base checkpoint folder.
func (s *stage) modelDir(ctx context.Context, env *stages.Env) (string, error) {
	if ps := env.Paths("model"); len(ps) > 0 {
		p := ps[0]
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			p = filepath.Dir(p) // config.json or a weights file named directly
		}
		return p, nil
	}
	if s.cfg.BaseModel == "tiny" {
		return checkpoint.EnsureTiny("")
	}
	name := s.cfg.BaseModel
	if !filepath.IsAbs(name) && !hub.IsRepoID(name) && env.WorkDir != "" {
		name = filepath.Join(env.WorkDir, name)
	}
	return hub.Resolve(ctx, name, hub.Options{Offline: s.cfg.Offline})
}

// fingerprint identifies what the run computes: the stage version, every
// parameter that changes the result, the data and the base model.
func (s *stage) fingerprint(env *stages.Env, modelDir string) (string, error) {
	h := blake3.New()
	fmt.Fprintf(h, "pipe train %s\n", Definition.Version)
	vals := s.raw.AsValueMap()
	delete(vals, "progress")
	delete(vals, "run_dir")
	// The device count changes only the floating-point order, so a run
	// may resume on another number of GPUs.
	delete(vals, "devices")
	b, err := ctyjson.Marshal(cty.ObjectVal(vals), cty.ObjectVal(vals).Type())
	if err != nil {
		return "", err
	}
	h.Write(b)
	for _, in := range []string{"train", "eval"} {
		for _, p := range env.Paths(in) {
			d, _, err := artifacts.DigestFile(p)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "\n%s %s", in, d)
		}
	}
	// The base model: its config and the names and sizes of its files
	// (hashing gigabytes of weights at every start would cost minutes).
	cfgBytes, err := os.ReadFile(filepath.Join(modelDir, "config.json"))
	if err != nil {
		return "", err
	}
	h.Write(cfgBytes)
	ents, err := os.ReadDir(modelDir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".safetensors") {
			fmt.Fprintf(h, "\n%s %d", e.Name(), fi.Size())
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func (s *stage) Run(ctx context.Context, env *stages.Env) error {
	c := &s.cfg
	log := env.Logger
	modelDir, err := s.modelDir(ctx, env)
	if err != nil {
		return err
	}
	tokDir := modelDir
	if _, err := os.Stat(filepath.Join(modelDir, "tokenizer.json")); err != nil {
		tokDir = tokenizer.DefaultDir()
	}
	tok, err := tokenizer.Load(tokDir)
	if err != nil {
		return fmt.Errorf("tokenizer: %w", err)
	}

	backend, choice, err := mltrain.OpenBackend(c.Backend, c.PJRTPlugin, c.XLAOptions)
	if err != nil {
		return err
	}
	defer backend.Finalize()
	log.Info("backend", "config", choice.Config, "why", choice.Reason)

	dtype := dtypes.BFloat16
	if c.DType == "float32" || (c.DType == "auto" && backend.Name() != "xla") {
		dtype = dtypes.Float32
	}
	quant, _ := qwen2.ParseQuantization(c.Quantization)
	// The quantised base is kept in the user cache folder, so later runs
	// (and the eval stage) skip quantising the same checkpoint again.
	cacheDir, _ := checkpoint.DefaultCacheDir()
	m, reused, err := qwen2.LoadCached(ctx, modelDir, qwen2.Options{
		DType: dtype, Quantization: quant, GradientCheckpointing: c.GradientCheckpointing, LossChunk: c.LossChunk,
	}, cacheDir)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %v", mltrain.ErrInterrupted, err)
		}
		return err
	}
	log.Info("base model loaded", "quantization", c.Quantization, "quantized_base_reused", reused)
	if err := m.AddLoRA(c.loraConfig(), uint64(c.Seed)); err != nil {
		return err
	}

	overlong := mltrain.Overlong(c.Overlong)
	trainEx, trainStats, err := mltrain.LoadExamples(env.Paths("train"), tok.EncodeRecord, c.TrainOnAll, c.MaxLen, overlong)
	if err != nil {
		return err
	}
	evalEx, evalStats, err := mltrain.LoadExamples(env.Paths("eval"), tok.EncodeRecord, c.TrainOnAll, c.MaxLen, overlong)
	if err != nil {
		return err
	}
	batch := mltrain.Pack
	if !c.Packing {
		batch = mltrain.Bucket
	}
	fp, err := s.fingerprint(env, modelDir)
	if err != nil {
		return err
	}
	root := c.RunDir
	if !filepath.IsAbs(root) && env.WorkDir != "" {
		root = filepath.Join(env.WorkDir, root)
	}
	runDir := filepath.Join(root, env.Stage+"-"+fp)
	var progress io.Writer
	if c.Progress {
		progress = os.Stderr
	}
	sched, _ := mltrain.ParseSchedule(c.LRScheduler)
	baseName := c.BaseModel
	if len(env.Paths("model")) > 0 {
		baseName = modelDir
	}
	rep, err := mltrain.Train(ctx, mltrain.Options{
		Backend: backend, Model: mltrain.Qwen2(m, baseName, c.Packing),
		Train: batch(trainEx, c.MaxLen, c.BatchSize), Eval: batch(evalEx, c.MaxLen, c.BatchSize),
		TrainStats: trainStats, EvalStats: evalStats,
		Epochs: c.Epochs, GradAccum: c.GradAccum, Devices: devices(c.Devices), LearningRate: c.LearningRate, WarmupRatio: c.WarmupRatio,
		Schedule: sched, MaxSteps: c.MaxSteps, Seed: uint64(c.Seed),
		Optimizer: mltrain.Optimizer{Beta1: c.AdamBeta1, Beta2: c.AdamBeta2, Epsilon: c.AdamEpsilon,
			WeightDecay: c.WeightDecay, MaxGradNorm: c.MaxGradNorm},
		EvalSteps: c.EvalSteps, EarlyStoppingPatience: c.EarlyStoppingPatience,
		EarlyStoppingThreshold: c.EarlyStoppingThreshold, SaveSteps: c.SaveSteps, KeepCheckpoints: c.KeepCheckpoints,
		RunDir: runDir, Fingerprint: fp, Logger: log, Progress: progress,
	})
	if err != nil {
		if errors.Is(err, mltrain.ErrInterrupted) {
			return fmt.Errorf("%w; the next run resumes from the latest checkpoint in %s", err, runDir)
		}
		return err
	}

	// Outputs.
	copies := []struct{ from, to string }{
		{mltrain.BestDir, "adapter"}, {mltrain.LastDir, "last_adapter"}, {mltrain.ReportFile, "report"},
		{mltrain.MetricsFile, "metrics"}, {mltrain.TensorBoardDir, "tensorboard"}, {mltrain.LossCurveFile, "loss_curve"},
	}
	for _, cp := range copies {
		if err := copyPath(filepath.Join(runDir, cp.from), env.OutputPath(cp.to)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(env.OutputPath("tokenizer"), 0o755); err != nil {
		return err
	}
	if _, err := checkpoint.CopyTokenizer(tokDir, env.OutputPath("tokenizer")); err != nil {
		return err
	}
	if c.Merged {
		if err := m.ImportAdapter(filepath.Join(runDir, mltrain.BestDir)); err != nil {
			return err
		}
		if err := m.WriteMerged(env.OutputPath("merged"), modelDir, safetensors.DType(c.MergedDType), 5<<30); err != nil {
			return err
		}
	}
	if env.Summary == nil {
		env.Summary = map[string]any{}
	}
	{
		env.Summary["steps"] = rep.Steps
		env.Summary["epochs"] = rep.Epochs
		env.Summary["stopped_early"] = rep.StoppedEarly
		env.Summary["train_examples"] = rep.Train.Examples
		env.Summary["eval_examples"] = rep.Eval.Examples
		env.Summary["truncated"] = rep.Train.Truncated + rep.Eval.Truncated
		for k, v := range rep.Train.Dropped {
			env.Summary["dropped_"+k] = v + rep.Eval.Dropped[k]
		}
		if rep.BestEvalLoss != nil {
			env.Summary["best_eval_loss"] = *rep.BestEvalLoss
		}
		env.Summary["tokens_per_second"] = rep.TokensPerSec
		env.Summary["backend"] = choice.Config
	}
	return nil
}

// copyPath copies the file or folder from to the path to.
func copyPath(from, to string) error {
	fi, err := os.Stat(from)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return copyFile(from, to)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		if err := copyPath(filepath.Join(from, n), filepath.Join(to, n)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// devices maps the devices parameter (0: all) onto ml/train's Options.
func devices(n int) int {
	if n == 0 {
		return mltrain.AllDevices
	}
	return n
}
