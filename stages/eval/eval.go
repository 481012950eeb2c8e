package eval

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"

	"github.com/pipeml/pipe/artifacts"
	mleval "github.com/pipeml/pipe/ml/eval"
	"github.com/pipeml/pipe/ml/qwen2"
	"github.com/pipeml/pipe/ml/train"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/tokenizer"
)

// Definition is the `eval` stage kind.
var Definition = &stages.Definition{
	Name:    "eval",
	Version: "1",
	Doc:     doc,
	Spec:    spec,
	Inputs: []stages.InputSpec{
		{Name: "records", Doc: "The eval split: JSONL record files (chat and FIM).", Required: true, List: true},
		{Name: "adapters", Doc: "PEFT LoRA adapter folders to compare with the base (a train stage's adapter output, or any folder with adapter_config.json; a training run folder's best/ is used).", List: true},
		{Name: "fim", Doc: "More JSONL files whose FIM records are infilling tasks (not part of the loss).", List: true},
		{Name: "model", Doc: "A Hugging Face checkpoint folder to evaluate; overrides `base_model` (as in the train stage)."},
		{Name: "tokenizer", Doc: "A tokenizer folder; by default the model folder's tokenizer, else the Qwen2.5 tokenizer from the cache folder."},
	},
	Outputs: []stages.OutputSpec{
		{Name: "report", Doc: "eval_report.json: losses, FIM scores, chat samples (JSON).", Kind: stages.File},
		{Name: "page", Doc: "A folder with report.md, eval_report.json and the PNG charts.", Kind: stages.Dir},
	},
	New: newStage,
}

const doc = `Evaluation: base model against fine-tuned adapters

Loads the base model once and evaluates it, then each adapter of
` + "`adapters`" + ` on top of it, on the eval split ` + "`records`" + `:

- **Loss and perplexity** with the training loss masks
  (tokenizer.EncodeRecord: assistant turns of chat records, the middle of
  FIM records): the token-weighted mean cross-entropy over all records,
  by kind (chat, fim, completion) and by meta.source, and exp(loss).
- **FIM infilling** on the FIM records of ` + "`records`" + ` and ` + "`fim`" + ` (prompts
  ending in <|fim_middle|>): greedy decoding with the KV cache until
  Qwen's <|endoftext|>, <|im_end|>, <|im_start|>, a <|fim_*|>,
  <|repo_name|> or <|file_sep|> token, or ` + "`max_new_tokens`" + `. Scores: exact
  match of the first non-blank line (trailing blanks aside), exact match
  of the whole middle (line endings and trailing whitespace at the end
  aside), and edit similarity 1 - Levenshtein/max(len) counted in runes;
  also by source and by the middle's length in tokens.
- **Chat samples**: the same prompts answered greedily by every model,
  side by side.

Outputs: ` + "`report`" + ` (eval_report.json) and ` + "`page`" + `, a folder with
report.md (tables, the samples, and three PNG charts: loss by subset,
FIM accuracy, FIM edit similarity by middle length) and eval_report.json.
The files do not depend on timing; generation speed (tokens/s per model)
goes to the run summary only. ` + "`pipe metrics diff`" + ` compares the numbers of
two runs.

The base model is the ` + "`model`" + ` input folder when set (its content is
hashed like any input), else ` + "`base_model`" + `, resolved as the train stage
does: "tiny" (a random Qwen2 with the real vocabulary, generated
locally), a checkpoint folder (relative to the project folder), or a hub
id such as Qwen/Qwen2.5-Coder-3B-Instruct (from the Hugging Face cache,
downloaded when missing unless ` + "`offline`" + `). For a ` + "`base_model`" + ` folder the
cache key covers its config.json and safetensors headers, not every
weight byte. Evaluate adapters on the base they were trained on (the
same model and, for QLoRA, the same ` + "`quantization`" + `).

Parameters:

- ` + "`base_model`" + ` (string, default "tiny"): the base model when the ` + "`model`" + `
  input is not set.
- ` + "`offline`" + ` (bool, default false): never download the base model
  (also HF_HUB_OFFLINE=1).
- ` + "`adapter_names`" + ` (list of strings, default ["tuned"] for one adapter,
  ["tuned1", "tuned2", ...] for several): report labels of the adapters.
- ` + "`backend`" + ` (string, default "auto"): "auto", "go"/"cpu", "cuda"/"gpu" or
  a GoMLX backend string, chosen as the train stage does
  (ml/train.ResolveBackend).
- ` + "`pjrt_plugin`" + ` (string, default ""): path of the CUDA PJRT plugin.
- ` + "`xla_options`" + ` (string, default "preallocate=false"): options appended
  to an XLA backend configuration, as in the train stage.
- ` + "`dtype`" + ` (string, default "auto"): compute dtype, "bfloat16" or
  "float32"; "auto" is bfloat16 on XLA (the GPU), float32 elsewhere (the pure-Go CPU backend).
- ` + "`quantization`" + ` (string, default "int8", the train stage's default):
  base weights as "none", "int8" or "nf4"; use the training run's value.
- ` + "`max_len`" + ` (number, default 2048): the most tokens of a loss example;
  also the bound of a FIM prompt plus ` + "`max_new_tokens`" + ` (longer tasks are
  skipped and counted).
- ` + "`overlong`" + ` (string, default "truncate"): "truncate" or "drop" loss
  examples longer than ` + "`max_len`" + `.
- ` + "`train_on_all`" + ` (bool, default false): compute the loss on every token,
  as the train parameter of that name does.
- ` + "`batch_size`" + ` (number, default 1): rows per loss batch (examples are
  padded to power-of-two lengths from 64).
- ` + "`fim_max_examples`" + ` (number, default 200): the most infilling tasks,
  taken in file order; 0 turns FIM infilling off.
- ` + "`max_new_tokens`" + ` (number, default 128): the most tokens of an infilling.
- ` + "`chat_prompts`" + ` (list of strings, default []): user messages to answer;
  when empty, the first user turn (with its system message) of each of the
  first ` + "`chat_samples`" + ` chat records of ` + "`records`" + `.
- ` + "`chat_samples`" + ` (number, default 4): how many chat records supply
  default prompts.
- ` + "`chat_max_new_tokens`" + ` (number, default 256): the most tokens of an
  answer.
`

func attr(name string, ty cty.Type, def cty.Value) hcldec.Spec {
	return &hcldec.DefaultSpec{
		Primary: &hcldec.AttrSpec{Name: name, Type: ty},
		Default: &hcldec.LiteralSpec{Value: def},
	}
}

var spec = hcldec.ObjectSpec{
	"base_model":          attr("base_model", cty.String, cty.StringVal(mleval.TinyModel)),
	"offline":             attr("offline", cty.Bool, cty.False),
	"adapter_names":       attr("adapter_names", cty.List(cty.String), cty.ListValEmpty(cty.String)),
	"backend":             attr("backend", cty.String, cty.StringVal("auto")),
	"pjrt_plugin":         attr("pjrt_plugin", cty.String, cty.StringVal("")),
	"xla_options":         attr("xla_options", cty.String, cty.StringVal("preallocate=false")),
	"dtype":               attr("dtype", cty.String, cty.StringVal("auto")),
	"quantization":        attr("quantization", cty.String, cty.StringVal("int8")),
	"max_len":             attr("max_len", cty.Number, cty.NumberIntVal(2048)),
	"overlong":            attr("overlong", cty.String, cty.StringVal("truncate")),
	"train_on_all":        attr("train_on_all", cty.Bool, cty.False),
	"batch_size":          attr("batch_size", cty.Number, cty.NumberIntVal(1)),
	"fim_max_examples":    attr("fim_max_examples", cty.Number, cty.NumberIntVal(200)),
	"max_new_tokens":      attr("max_new_tokens", cty.Number, cty.NumberIntVal(128)),
	"chat_prompts":        attr("chat_prompts", cty.List(cty.String), cty.ListValEmpty(cty.String)),
	"chat_samples":        attr("chat_samples", cty.Number, cty.NumberIntVal(4)),
	"chat_max_new_tokens": attr("chat_max_new_tokens", cty.Number, cty.NumberIntVal(256)),
}

type config struct {
	Model            string   `cty:"base_model"`
	Offline          bool     `cty:"offline"`
	AdapterNames     []string `cty:"adapter_names"`
	Backend          string   `cty:"backend"`
	PJRTPlugin       string   `cty:"pjrt_plugin"`
	XLAOptions       string   `cty:"xla_options"`
	DType            string   `cty:"dtype"`
	Quantization     string   `cty:"quantization"`
	MaxLen           int      `cty:"max_len"`
	Overlong         string   `cty:"overlong"`
	TrainOnAll       bool     `cty:"train_on_all"`
	BatchSize        int      `cty:"batch_size"`
	FIMMaxExamples   int      `cty:"fim_max_examples"`
	MaxNewTokens     int      `cty:"max_new_tokens"`
	ChatPrompts      []string `cty:"chat_prompts"`
	ChatSamples      int      `cty:"chat_samples"`
	ChatMaxNewTokens int      `cty:"chat_max_new_tokens"`
}

// Stage is a configured eval stage.
type Stage struct {
	cfg   config
	quant qwen2.Quantization
}

var (
	_ stages.Stage = (*Stage)(nil)
	_ stages.Keyer = (*Stage)(nil)
)

func newStage(v cty.Value) (stages.Stage, hcl.Diagnostics) {
	var c config
	if err := gocty.FromCtyValue(v, &c); err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid eval parameters", Detail: err.Error()}}
	}
	var diags hcl.Diagnostics
	bad := func(summary, detail string) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail})
	}
	q, err := qwen2.ParseQuantization(c.Quantization)
	if err != nil {
		bad("Invalid quantization", err.Error()+".")
	}
	switch c.DType {
	case "auto", "bfloat16", "float32":
	default:
		bad("Invalid dtype", fmt.Sprintf("dtype is %q; use \"auto\", \"bfloat16\" or \"float32\".", c.DType))
	}
	if c.Overlong != "truncate" && c.Overlong != "drop" {
		bad("Invalid overlong", fmt.Sprintf("overlong is %q; use \"truncate\" or \"drop\".", c.Overlong))
	}
	if c.Model == "" {
		bad("Invalid base_model", "base_model is empty; use \"tiny\", a checkpoint folder or a hub id such as Qwen/Qwen2.5-Coder-3B-Instruct.")
	}
	for _, x := range []struct {
		name string
		v    int
		min  int
	}{{"max_len", c.MaxLen, 64}, {"batch_size", c.BatchSize, 1}, {"fim_max_examples", c.FIMMaxExamples, 0},
		{"max_new_tokens", c.MaxNewTokens, 1}, {"chat_samples", c.ChatSamples, 0}, {"chat_max_new_tokens", c.ChatMaxNewTokens, 1}} {
		if x.v < x.min {
			bad("Invalid "+x.name, fmt.Sprintf("%s is %d; it must be at least %d.", x.name, x.v, x.min))
		}
	}
	if c.MaxNewTokens >= c.MaxLen {
		bad("Invalid max_new_tokens", fmt.Sprintf("max_new_tokens (%d) must be below max_len (%d), which bounds prompt and completion together.", c.MaxNewTokens, c.MaxLen))
	}
	for i, n := range c.AdapterNames {
		if n == "" || n == "base" || strings.ContainsAny(n, " \t\n|") {
			bad("Invalid adapter_names", fmt.Sprintf("adapter_names[%d] is %q; names must be non-empty, without spaces or '|', and not \"base\".", i, n))
		}
		for _, m := range c.AdapterNames[:i] {
			if m == n {
				bad("Invalid adapter_names", fmt.Sprintf("adapter_names has %q twice.", n))
			}
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return &Stage{cfg: c, quant: q}, nil
}

// KeyParts puts the identity of the base model's weights into the cache
// key (see mleval.ModelKey): the model parameter alone does not change
// when a folder's content does.
func (s *Stage) KeyParts(ctx context.Context, env *stages.Env) (map[string]string, error) {
	if len(env.Paths("model")) > 0 {
		return nil, nil // an input: the engine hashes its content
	}
	k, err := mleval.ModelKey(s.cfg.Model, env.WorkDir)
	if err != nil {
		return nil, err
	}
	return map[string]string{"model_weights": k}, nil
}

func (s *Stage) fail(env *stages.Env, summary string, err error) error {
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: err.Error(), Subject: env.Range.Ptr()}}
}

// adapterNames labels the adapters.
func (s *Stage) adapterNames(n int) ([]string, error) {
	if len(s.cfg.AdapterNames) > 0 {
		if len(s.cfg.AdapterNames) != n {
			return nil, fmt.Errorf("adapter_names has %d names for %d adapters", len(s.cfg.AdapterNames), n)
		}
		return s.cfg.AdapterNames, nil
	}
	if n == 1 {
		return []string{"tuned"}, nil
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("tuned%d", i+1)
	}
	return names, nil
}

// Run evaluates and writes the report.
func (s *Stage) Run(ctx context.Context, env *stages.Env) error {
	c := s.cfg
	names, err := s.adapterNames(len(env.Paths("adapters")))
	if err != nil {
		return s.fail(env, "Invalid adapter_names", err)
	}
	var adapters []mleval.Adapter
	for i, p := range env.Paths("adapters") {
		dir, err := mleval.ResolveAdapterDir(p)
		if err != nil {
			return s.fail(env, "Not an adapter folder", err)
		}
		adapters = append(adapters, mleval.Adapter{Name: names[i], Dir: dir})
	}
	modelName, baseDir := c.Model, ""
	if p := env.Paths("model"); len(p) > 0 {
		modelName, baseDir = filepath.Base(p[0]), p[0]
		if fi, serr := os.Stat(baseDir); serr == nil && !fi.IsDir() {
			baseDir = filepath.Dir(baseDir) // config.json or a weights file named directly
		}
	} else {
		baseDir, err = mleval.ResolveModel(ctx, c.Model, env.WorkDir, c.Offline)
	}
	if err != nil {
		return s.fail(env, "Cannot find the base model", err)
	}
	var tok *tokenizer.Tokenizer
	switch p := env.Paths("tokenizer"); {
	case len(p) > 0:
		tok, err = tokenizer.Load(p[0])
	default:
		if _, serr := os.Stat(filepath.Join(baseDir, "tokenizer.json")); serr == nil {
			tok, err = tokenizer.Load(baseDir)
		} else {
			tok, err = tokenizer.Default()
		}
	}
	if err != nil {
		return s.fail(env, "Cannot load the tokenizer", err)
	}
	backend, choice, err := train.OpenBackend(c.Backend, c.PJRTPlugin, c.XLAOptions)
	if err != nil {
		return s.fail(env, "Cannot start the backend", err)
	}
	defer backend.Finalize()
	env.Logger.Info("backend", "config", choice.Config, "reason", choice.Reason)
	dt := dtypes.BFloat16
	if c.DType == "float32" || (c.DType == "auto" && !strings.HasPrefix(choice.Config, "xla")) {
		dt = dtypes.Float32
	}
	opts := mleval.Options{
		Backend: backend, Model: modelName, BaseDir: baseDir, Adapters: adapters,
		ModelOptions: qwen2.Options{DType: dt, Quantization: s.quant},
		Tokenizer:    tok,
		RenderChat: func(msgs []artifacts.Message) (string, error) {
			return tokenizer.RenderChat(msgs, nil, true)
		},
		Records: env.Paths("records"), FIMFiles: env.Paths("fim"),
		MaxLen: c.MaxLen, DropOverlong: c.Overlong == "drop", TrainOnAll: c.TrainOnAll, BatchSize: c.BatchSize,
		FIMMaxExamples: c.FIMMaxExamples, FIMDisabled: c.FIMMaxExamples == 0, MaxNewTokens: c.MaxNewTokens,
		ChatPrompts: c.ChatPrompts, ChatSamples: c.ChatSamples, ChatMaxNewTokens: c.ChatMaxNewTokens,
		Logger: env.Logger, Progress: env.Progress,
	}
	rep, err := mleval.Evaluate(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return s.fail(env, "Evaluation failed", err)
	}
	page := env.OutputPath("page")
	if err := os.MkdirAll(page, 0o755); err != nil {
		return err
	}
	if err := rep.Write(page); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(page, mleval.ReportFile))
	if err != nil {
		return err
	}
	if err := os.WriteFile(env.OutputPath("report"), b, 0o644); err != nil {
		return err
	}
	fillSummary(env, rep)
	return nil
}

// fillSummary puts the headline numbers, and the generation speed that
// the report leaves out, into the run summary.
func fillSummary(env *stages.Env, rep *mleval.Report) {
	if env.Summary == nil {
		env.Summary = map[string]any{}
	}
	env.Summary["records"] = rep.Data.Records
	env.Summary["examples"] = rep.Data.Examples
	for _, m := range rep.Models {
		if t := rep.Loss[m]; t != nil && t.All.Tokens > 0 {
			env.Summary[m+".eval_loss"] = round(t.All.Loss, 4)
			env.Summary[m+".perplexity"] = round(t.All.Perplexity, 3)
		}
		if rep.FIM != nil && rep.FIM.Scores[m] != nil {
			f := rep.FIM.Scores[m]
			env.Summary[m+".fim_exact_middle"] = round(f.ExactMiddle, 4)
			env.Summary[m+".fim_exact_first_line"] = round(f.ExactFirstLine, 4)
			env.Summary[m+".fim_edit_similarity"] = round(f.EditSimilarity, 4)
		}
		if tp := rep.Timing[m]; tp.TokensPerSecond() > 0 {
			env.Summary[m+".generate_tokens_per_second"] = round(tp.TokensPerSecond(), 1)
		}
	}
}

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if v > 1e15 {
		return v
	}
	return float64(int64(v*p+0.5*sign(v))) / p
}

func sign(v float64) float64 {
	if v < 0 {
		return -1
	}
	return 1
}
