package eval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/ml/checkpoint"
	"github.com/pipeml/pipe/ml/qwen2"
)

// Adapter is one PEFT LoRA adapter to evaluate against the base.
type Adapter struct {
	// Name labels the adapter's column in the report ("tuned", ...).
	Name string
	// Dir is the adapter folder (adapter_config.json,
	// adapter_model.safetensors).
	Dir string
}

// Options configure one evaluation. Zero values take the defaults in
// brackets.
type Options struct {
	Backend compute.Backend
	// Model names the base model in the report; BaseDir is its checkpoint
	// folder.
	Model, BaseDir string
	ModelOptions   qwen2.Options
	Adapters       []Adapter

	Tokenizer Tokenizer
	// RenderChat renders messages with the chat template and the
	// generation prompt (tokenizer.RenderChat with addGenerationPrompt).
	RenderChat func(msgs []artifacts.Message) (string, error)

	// Records are the eval split's JSONL files: every record counts in the
	// loss, FIM records are infilling tasks and chat records supply the
	// default chat prompts. FIMFiles are further JSONL files whose FIM
	// records are infilling tasks (and nothing else).
	Records, FIMFiles []string

	// MaxLen bounds the tokens of a loss example [2048]; longer ones are
	// truncated, or dropped with DropOverlong. TrainOnAll puts every token
	// in the loss, as the training parameter of that name does.
	MaxLen       int
	DropOverlong bool
	TrainOnAll   bool
	// BatchSize is the rows of a loss batch [1].
	BatchSize int

	// FIMMaxExamples caps the infilling tasks, taken in file order [200]
	// (0 after defaults means none: set FIMDisabled). MaxNewTokens bounds
	// each infilling [128].
	FIMMaxExamples int
	FIMDisabled    bool
	MaxNewTokens   int

	// ChatPrompts are user messages to answer; when empty, the first
	// ChatSamples chat records of Records supply their first user turn
	// (with their system message) [ChatSamples 4]. ChatMaxNewTokens
	// bounds each answer [256].
	ChatPrompts      []string
	ChatSamples      int
	ChatMaxNewTokens int

	Logger *slog.Logger
	// Progress reports units of work done (loss batches, generations).
	Progress func(done, total int)
}

func (o *Options) defaults() {
	if o.MaxLen <= 0 {
		o.MaxLen = 2048
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1
	}
	if o.FIMMaxExamples <= 0 {
		o.FIMMaxExamples = 200
	}
	if o.MaxNewTokens <= 0 {
		o.MaxNewTokens = 128
	}
	if o.ChatSamples < 0 {
		o.ChatSamples = 0
	}
	if o.ChatMaxNewTokens <= 0 {
		o.ChatMaxNewTokens = 256
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// ResolveAdapterDir returns the PEFT adapter folder inside dir: dir itself
// when it holds adapter_config.json, else its best/ or last/ subfolder
// (the layout of a training run folder), else an error.
func ResolveAdapterDir(dir string) (string, error) {
	for _, d := range []string{dir, filepath.Join(dir, "best"), filepath.Join(dir, "last")} {
		if _, err := os.Stat(filepath.Join(d, qwen2.AdapterConfigFile)); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("%s: no %s there nor in its best/ or last/ subfolder", dir, qwen2.AdapterConfigFile)
}

// data is the evaluation set, read once.
type data struct {
	loss  []lossExample
	stats DataStats
	fim   []fimExample
	fimN  []int // reference middle lengths in tokens
	skip  map[string]int
	chat  []chatPrompt
}

func (o *Options) readData() (*data, error) {
	d := &data{skip: map[string]int{}}
	tok := o.Tokenizer
	var chatFromRecords []chatPrompt
	fimOK := func(fe fimExample) {
		if o.FIMDisabled {
			return
		}
		if len(d.fim) >= o.FIMMaxExamples {
			d.skip["limit"]++
			return
		}
		n := len(tok.Encode(fe.Prompt))
		if n+o.MaxNewTokens > o.MaxLen {
			d.skip["too_long"]++
			return
		}
		d.fim = append(d.fim, fe)
		d.fimN = append(d.fimN, len(tok.Encode(fe.Middle)))
	}
	err := readRecords(o.Records, func(rec *artifacts.Record, where string) error {
		d.stats.Records++
		kind := recordKind(rec)
		ids, mask, err := tok.EncodeRecord(rec, o.TrainOnAll)
		if err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		switch kind {
		case KindFIM:
			fimOK(fimFromRecord(rec, where))
		case KindChat:
			if len(chatFromRecords) < o.ChatSamples {
				if cp, ok := chatFromRecord(rec, where); ok {
					chatFromRecords = append(chatFromRecords, cp)
				}
			}
		}
		if len(ids) > o.MaxLen {
			if o.DropOverlong {
				d.drop("too_long")
				return nil
			}
			ids, mask = ids[:o.MaxLen], mask[:o.MaxLen]
			d.stats.Truncated++
		}
		if len(ids) < 2 {
			d.drop("too_short")
			return nil
		}
		ex := lossExample{ids: ids, mask: mask, kind: kind, source: recordSource(rec)}
		n := ex.lossTokens()
		if n == 0 {
			d.drop("no_loss_tokens")
			return nil
		}
		d.stats.Examples++
		d.stats.Tokens += len(ids)
		d.stats.LossTokens += n
		d.loss = append(d.loss, ex)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = readRecords(o.FIMFiles, func(rec *artifacts.Record, where string) error {
		if recordKind(rec) == KindFIM {
			fimOK(fimFromRecord(rec, where))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(o.ChatPrompts) > 0 {
		for _, p := range o.ChatPrompts {
			d.chat = append(d.chat, chatPrompt{Messages: []artifacts.Message{{Role: "user", Content: p}}})
		}
	} else {
		d.chat = chatFromRecords
	}
	return d, nil
}

func (d *data) drop(reason string) {
	if d.stats.Dropped == nil {
		d.stats.Dropped = map[string]int{}
	}
	d.stats.Dropped[reason]++
}

// Evaluate runs the evaluation: it loads the base once, measures it, then
// each adapter in turn, and returns the report (not yet written; see
// Report.Write).
func Evaluate(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	if opts.Backend == nil || opts.Tokenizer == nil || opts.BaseDir == "" {
		return nil, errors.New("eval: no backend, tokenizer or base model")
	}
	if len(opts.ChatPrompts) > 0 || opts.ChatSamples > 0 {
		if opts.RenderChat == nil {
			return nil, errors.New("eval: chat samples need RenderChat")
		}
	}
	log := opts.Logger
	d, err := opts.readData()
	if err != nil {
		return nil, err
	}
	var stops []int32
	for _, name := range StopTokenNames {
		if id, ok := opts.Tokenizer.TokenID(name); ok {
			stops = append(stops, id)
		}
	}
	names := []string{"base"}
	for _, a := range opts.Adapters {
		if a.Name == "" || slices.Contains(names, a.Name) {
			return nil, fmt.Errorf("eval: adapter %s needs a unique name other than \"base\" (got %q)", a.Dir, a.Name)
		}
		names = append(names, a.Name)
	}
	rep := &Report{
		Model: opts.Model, Backend: opts.Backend.Name(), MaxLen: opts.MaxLen,
		DType: opts.ModelOptions.DType.String(), Quant: string(opts.ModelOptions.Quantization),
		Models: names, Data: d.stats, Loss: map[string]*LossTable{}, Timing: map[string]*Throughput{},
	}
	if opts.ModelOptions.DType == dtypes.InvalidDType {
		rep.DType = dtypes.BFloat16.String()
	}
	if rep.Quant == "" {
		rep.Quant = string(qwen2.QuantNone)
	}
	if len(d.fim) > 0 || len(d.skip) > 0 {
		rep.FIM = &FIMReport{Examples: len(d.fim), MaxNewTokens: opts.MaxNewTokens, Scores: map[string]*FIMScores{},
			LengthBuckets: allLengthBuckets()}
		if len(d.skip) > 0 {
			rep.FIM.Skipped = d.skip
		}
		for i, fe := range d.fim {
			rep.FIM.Samples = append(rep.FIM.Samples, FIMSample{Where: fe.Where, Source: fe.Source, Path: fe.Path,
				MiddleTokens: d.fimN[i], Reference: fe.Middle, Results: map[string]FIMResult{}})
		}
	}
	for _, cp := range d.chat {
		cs := ChatSample{Where: cp.Where, Answers: map[string]string{}}
		for _, m := range cp.Messages {
			if m.Role == "system" {
				cs.System = m.Content
			} else {
				cs.Prompt = m.Content
			}
		}
		rep.Chat = append(rep.Chat, cs)
	}

	batches := planBatches(d.loss, opts.MaxLen, opts.BatchSize)
	total := len(names) * (len(batches) + len(d.fim) + len(d.chat))
	done := 0
	step := func() {
		done++
		if opts.Progress != nil {
			opts.Progress(done, total)
		}
	}

	// One compiled set of programs serves every model of the same adapter
	// shape (rank, targets, scaling: the scaling is a constant of the
	// graphs): the base is evaluated with a zero adapter shaped like the
	// first one (PEFT's initialisation, B = 0, adds exactly nothing), and
	// each adapter of that shape then only overwrites the variables. On
	// the GPU, where each program takes seconds to compile, this halves
	// the compilation. An adapter of another shape reloads the base.
	configs := make([]*qwen2.AdapterConfig, len(opts.Adapters))
	loras := make([]qwen2.LoRAConfig, len(opts.Adapters))
	for i, a := range opts.Adapters {
		if configs[i], loras[i], err = qwen2.ReadAdapterConfig(a.Dir); err != nil {
			return nil, err
		}
		loras[i].Targets = loras[i].TargetSet()
		loras[i].Dropout = 0
	}
	sameShape := func(a, b *qwen2.LoRAConfig) bool {
		return a != nil && b != nil && a.Rank == b.Rank && slices.Equal(a.Targets, b.Targets) && a.Scaling() == b.Scaling()
	}
	var (
		m   *qwen2.Model
		lr  *lossRunner
		gen *qwen2.Generator
		cur *qwen2.LoRAConfig // shape of m's adapter
	)
	load := func(lc *qwen2.LoRAConfig) error {
		t0 := time.Now()
		var err error
		cacheDir, _ := checkpoint.DefaultCacheDir()
		if m, _, err = qwen2.LoadCached(ctx, opts.BaseDir, opts.ModelOptions, cacheDir); err != nil {
			return err
		}
		if lc != nil {
			if err := m.AddLoRA(*lc, 1); err != nil {
				return err
			}
		}
		cur = lc
		lr, gen = newLossRunner(m, opts.Backend), m.NewGenerator(opts.Backend)
		log.Info("base model loaded", "model", opts.Model, "seconds", time.Since(t0).Seconds())
		return nil
	}
	var first *qwen2.LoRAConfig
	if len(loras) > 0 {
		first = &loras[0]
	}
	if err := load(first); err != nil {
		return nil, err
	}
	for vi, name := range names {
		if vi > 0 {
			a, lc := opts.Adapters[vi-1], &loras[vi-1]
			if !sameShape(cur, lc) {
				if err := load(lc); err != nil {
					return nil, err
				}
			}
			if err := m.ImportAdapter(a.Dir); err != nil {
				return nil, err
			}
			if rep.Adapters == nil {
				rep.Adapters = map[string]AdapterInfo{}
			}
			rep.Adapters[name] = AdapterInfo{Rank: lc.Rank, Alpha: lc.Alpha, Targets: lc.Targets, Base: configs[vi-1].BaseModelNameOrPath}
		}
		log.Info("evaluating", "model", name)

		table := newLossTable()
		for _, b := range batches {
			sums, err := lr.run(ctx, d.loss, b)
			if err != nil {
				return nil, fmt.Errorf("eval loss of %s: %w", name, err)
			}
			for row, i := range b.examples {
				ex := &d.loss[i]
				table.add(ex.kind, ex.source, sums[row], ex.lossTokens())
			}
			step()
		}
		table.finish()
		rep.Loss[name] = table

		tp := &Throughput{}
		rep.Timing[name] = tp
		if rep.FIM != nil && len(d.fim) > 0 {
			sc := &FIMScores{BySource: map[string]*FIMScores{}, ByLength: map[string]*FIMScores{}}
			for i, fe := range d.fim {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				prompt := opts.Tokenizer.Encode(fe.Prompt)
				out, stopped, secs, err := generate(gen, prompt, opts.MaxNewTokens, stops)
				if err != nil {
					return nil, fmt.Errorf("eval FIM generation of %s at %s: %w", name, fe.Where, err)
				}
				tp.Tokens += len(out)
				tp.Seconds += secs
				text := opts.Tokenizer.Decode(trimStop(out, stopped))
				r := FIMResult{
					Output: text, Tokens: len(out), Stopped: stopped,
					ExactFirstLine: ExactFirstLine(text, fe.Middle), ExactMiddle: ExactMiddle(text, fe.Middle),
					EditSimilarity: EditSimilarity(text, fe.Middle),
				}
				rep.FIM.Samples[i].Results[name] = r
				sc.add(r)
				for _, x := range []struct {
					m map[string]*FIMScores
					k string
				}{{sc.BySource, fe.Source}, {sc.ByLength, lengthBucket(d.fimN[i])}} {
					s := x.m[x.k]
					if s == nil {
						s = &FIMScores{}
						x.m[x.k] = s
					}
					s.add(r)
				}
				step()
			}
			sc.finish()
			rep.FIM.Scores[name] = sc
		}
		for i, cp := range d.chat {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			text, err := opts.RenderChat(cp.Messages)
			if err != nil {
				return nil, fmt.Errorf("eval chat prompt %d: %v", i+1, err)
			}
			prompt := opts.Tokenizer.Encode(text)
			out, stopped, secs, err := generate(gen, prompt, opts.ChatMaxNewTokens, stops)
			if err != nil {
				return nil, fmt.Errorf("eval chat generation of %s: %w", name, err)
			}
			tp.Tokens += len(out)
			tp.Seconds += secs
			rep.Chat[i].Answers[name] = opts.Tokenizer.Decode(trimStop(out, stopped))
			step()
		}
		log.Info("evaluated", "model", name, "eval_loss", table.All.Loss, "generated_tokens", tp.Tokens,
			"tokens_per_second", tp.TokensPerSecond())
	}
	return rep, nil
}

// generate decodes greedily from prompt with the KV cache until a stop
// token or maxNew tokens; stopped says which.
func generate(gen *qwen2.Generator, prompt []int32, maxNew int, stops []int32) (out []int32, stopped bool, seconds float64, err error) {
	t := time.Now()
	out, err = gen.Generate(prompt, qwen2.GenerateOptions{MaxNewTokens: maxNew, StopTokens: stops})
	seconds = time.Since(t).Seconds()
	if err != nil {
		return nil, false, seconds, err
	}
	stopped = len(out) > 0 && slices.Contains(stops, out[len(out)-1])
	return out, stopped, seconds, nil
}

// trimStop drops the final stop token.
func trimStop(out []int32, stopped bool) []int32 {
	if stopped {
		return out[:len(out)-1]
	}
	return out
}
