package train

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/gomlx/compute/gobackend"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/ml/tensorboard"
	mltrain "github.com/pipeml/pipe/ml/train"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/stages/stagestest"
	"github.com/pipeml/pipe/tokenizer"
)

func decode(t *testing.T, src string) stages.Stage {
	t.Helper()
	return stagestest.Decode(t, Definition, src)
}

func TestSpecDefaults(t *testing.T) {
	st := decode(t, "").(*stage)
	c := st.cfg
	if c.BaseModel != "Qwen/Qwen2.5-Coder-3B-Instruct" || c.LoraR != 32 || c.LoraAlpha != 64 || c.LoraDropout != 0.05 ||
		len(c.LoraTargets) != 7 || c.LearningRate != 2e-5 || c.LRScheduler != "cosine" || c.WarmupRatio != 0.1 ||
		c.BatchSize != 1 || c.GradAccum != 24 || c.MaxLen != 3600 || c.Epochs != 5 || c.EarlyStoppingPatience != 5 ||
		c.EarlyStoppingThreshold != 0.002 || c.Quantization != "int8" || !c.Packing || c.TrainOnAll || c.Devices != 1 {
		t.Errorf("defaults differ from the original pipeline's: %+v", c)
	}
	for _, p := range params {
		if !strings.Contains(Definition.Doc, "`"+p.Name+"`") {
			t.Errorf("Doc does not document %s", p.Name)
		}
	}
}

func TestSpecErrors(t *testing.T) {
	for _, src := range []string{
		`quantization = "int4"`, `lr_scheduler = "step"`, `overlong = "wrap"`, `grad_accum = 0`,
		`lora_targets = ["q_proj", "x_proj"]`, `dtype = "f8"`, `merged_dtype = "I8"`,
		`devices = -1`, "grad_accum = 6\ndevices = 4",
	} {
		f, _ := hclsyntax.ParseConfig([]byte(src), "p.hcl", hcl.InitialPos)
		v, diags := hcldec.Decode(f.Body, Definition.Spec, nil)
		if !diags.HasErrors() {
			_, diags = Definition.New(v)
		}
		if !diags.HasErrors() {
			t.Errorf("%s: accepted", src)
		}
	}
}

// tokenizerOrSkip loads the Qwen2.5 tokenizer the Taskfile fetches.
func tokenizerOrSkip(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	dir := tokenizer.DefaultDir()
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		if testing.Short() {
			t.Skipf("no Qwen2.5 tokenizer in %s (run `go tool task deps`)", dir)
		}
		t.Fatalf("no Qwen2.5 tokenizer in %s (run `go tool task deps`)", dir)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestLossMasksMatchFixtures encodes the tokenizer's reference chats and
// FIM pairs, packs them, and checks that the weighted targets are exactly
// the tokens Hugging Face marks as assistant tokens (and the FIM middles).
func TestLossMasksMatchFixtures(t *testing.T) {
	tok := tokenizerOrSkip(t)
	var cases struct {
		Chats []struct {
			Name     string              `json:"name"`
			Messages []artifacts.Message `json:"messages"`
			Tools    []artifacts.Tool    `json:"tools"`
			// Generation-prompt renders are not training records.
			AddGenerationPrompt bool `json:"add_generation_prompt"`
		} `json:"chats"`
		FIM []struct {
			Name, Prompt, Completion string
		} `json:"fim"`
	}
	var fx struct {
		Chats []struct {
			Name string  `json:"name"`
			IDs  []int32 `json:"ids"`
			Mask []int   `json:"mask"`
		} `json:"chats"`
		FIM []struct {
			Name          string  `json:"name"`
			PromptIDs     []int32 `json:"prompt_ids"`
			CompletionIDs []int32 `json:"completion_ids"`
		} `json:"fim"`
	}
	for path, v := range map[string]any{"../../tokenizer/testdata/chat_cases.json": &cases, "../../tokenizer/testdata/hf_fixtures.json": &fx} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	// want[i] lists the (target id, weighted) pairs of record i.
	type target struct {
		id int32
		w  bool
	}
	var recs []artifacts.Record
	var want [][]target
	noLoss := 0
	for _, c := range cases.Chats {
		for _, f := range fx.Chats {
			if f.Name != c.Name || c.AddGenerationPrompt {
				continue
			}
			var w []target
			learned := 0
			for i := 1; i < len(f.IDs); i++ {
				w = append(w, target{f.IDs[i], f.Mask[i] == 1})
				learned += f.Mask[i]
			}
			if learned == 0 {
				noLoss++ // nothing to learn: the loader drops it
				continue
			}
			recs = append(recs, artifacts.Record{Messages: c.Messages, Tools: c.Tools})
			want = append(want, w)
		}
	}
	for _, c := range cases.FIM {
		for _, f := range fx.FIM {
			if f.Name != c.Name {
				continue
			}
			recs = append(recs, artifacts.Record{Prompt: c.Prompt, Completion: c.Completion})
			ids := append(append([]int32{}, f.PromptIDs...), f.CompletionIDs...)
			if ids[len(ids)-1] != 151643 {
				ids = append(ids, 151643) // <|endoftext|>, appended to teach stopping
			}
			var w []target
			for i := 1; i < len(ids); i++ {
				w = append(w, target{ids[i], i >= len(f.PromptIDs)})
			}
			want = append(want, w)
		}
	}
	if len(recs) < 4 {
		t.Fatalf("only %d fixture records", len(recs))
	}
	path := filepath.Join(t.TempDir(), "train.jsonl")
	writeJSONL(t, path, recs)
	exs, st, err := mltrain.LoadExamples([]string{path}, tok.EncodeRecord, false, 4096, mltrain.Drop)
	if err != nil {
		t.Fatal(err)
	}
	if st.Examples != len(recs) {
		t.Fatalf("%d examples of %d records: %+v", st.Examples, len(recs), st)
	}
	// Pack everything into one row and read each document back.
	batches := mltrain.Pack(exs, 4096, 1)
	if len(batches) != 1 {
		t.Fatalf("%d batches", len(batches))
	}
	b := batches[0]
	got := map[int32][]target{}
	firstID := map[int32]int32{}
	for i := range b.Len {
		s := b.Segments[i]
		if s == 0 {
			continue
		}
		if _, ok := firstID[s]; !ok {
			firstID[s] = b.IDs[i]
		}
		if i+1 < b.Len && b.Segments[i+1] == s {
			got[s] = append(got[s], target{b.Targets[i], b.Weights[i] == 1})
		} else if b.Weights[i] != 0 {
			t.Errorf("the last token of document %d has a loss weight", s)
		}
	}
	matched := 0
	for _, g := range got {
		for k, w := range want {
			if len(w) != len(g) {
				continue
			}
			same := true
			for i := range w {
				if w[i] != g[i] {
					same = false
					break
				}
			}
			if same {
				matched++
				want[k] = nil
				break
			}
		}
	}
	for k, w := range want {
		if w != nil {
			ids, mask, _ := tok.EncodeRecord(&recs[k], false)
			t.Logf("record %d (%d targets) unmatched; EncodeRecord gives %d ids, %d learned", k, len(w), len(ids), countTrue(mask))
		}
	}
	if matched != len(recs) {
		t.Fatalf("%d of %d packed documents have exactly the reference targets and loss mask", matched, len(recs))
	}
}

// writeJSONL writes records to a file.
func writeJSONL(t *testing.T, path string, recs []artifacts.Record) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := artifacts.NewRecordWriter(f)
	for i := range recs {
		w.Write(&recs[i])
	}
	w.Flush()
	f.Close()
}

func sampleRecords(n int) []artifacts.Record {
	var recs []artifacts.Record
	for i := range n {
		if i%3 == 2 {
			recs = append(recs, artifacts.Record{Prompt: "<|fim_prefix|>func f() int {\n\t<|fim_suffix|>\n}\n<|fim_middle|>", Completion: "return 1"})
			continue
		}
		recs = append(recs, artifacts.Record{Messages: []artifacts.Message{
			{Role: "user", Content: "What does go vet check?"},
			{Role: "assistant", Content: "It reports suspicious constructs such as Printf calls with bad arguments."},
		}})
	}
	return recs
}

// runEnv makes an Env with train/eval inputs in a temp project folder.
func runEnv(t *testing.T) *stages.Env {
	dir := t.TempDir()
	train, eval := filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "eval.jsonl")
	writeJSONL(t, train, sampleRecords(6))
	writeJSONL(t, eval, sampleRecords(2))
	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	return &stages.Env{
		Stage: "finetune", Kind: "train", OutDir: out, WorkDir: dir, TempDir: t.TempDir(),
		Inputs: map[string]stages.Input{
			"train": {Name: "train", Paths: []string{train}},
			"eval":  {Name: "eval", Paths: []string{eval}},
		},
		Logger: nil, Summary: map[string]any{},
	}
}

func tinyEnv(t *testing.T) {
	t.Helper()
	tokenizerOrSkip(t)
	t.Setenv("PIPE_TOKENIZER", tokenizer.DefaultDir())
	t.Setenv("PIPE_CACHE_DIR", t.TempDir())
	t.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
}

const tinySrc = `
base_model = "tiny"
backend = "go"
max_len = 96
grad_accum = 2
epochs = 1
eval_steps = 1
progress = false
`

func TestRunTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("trains the tiny model")
	}
	tinyEnv(t)
	env := runEnv(t)
	env.Logger = discardLogger()
	st := decode(t, tinySrc+"merged = true\n")
	if err := st.Run(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(env.OutputPath("merged"), f)); err != nil {
			t.Errorf("merged checkpoint: %v", err)
		}
	}
	for _, o := range outputs(true) {
		if _, err := os.Stat(env.OutputPath(o.Name)); err != nil {
			t.Errorf("output %s: %v", o.Name, err)
		}
	}
	var ac map[string]any
	b, err := os.ReadFile(filepath.Join(env.OutputPath("adapter"), "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ac); err != nil || ac["peft_type"] != "LORA" || ac["r"] != 32.0 || ac["base_model_name_or_path"] != "tiny" {
		t.Errorf("adapter_config.json: %v %v", ac, err)
	}
	var rep mltrain.Report
	b, _ = os.ReadFile(env.OutputPath("report"))
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Train.Records != 6 || rep.Eval.Records != 2 || rep.Steps == 0 || rep.BestEvalLoss == nil {
		t.Errorf("report: %+v", rep)
	}
	ents, _ := os.ReadDir(env.OutputPath("tensorboard"))
	if len(ents) == 0 {
		t.Fatal("no event file")
	}
	if _, err := tensorboard.ReadFile(filepath.Join(env.OutputPath("tensorboard"), ents[0].Name())); err != nil {
		t.Error(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if _, err := os.Stat(filepath.Join(env.OutputPath("tokenizer"), f)); err != nil {
			t.Error(err)
		}
	}
	if env.Summary["steps"] != rep.Steps {
		t.Errorf("summary %v", env.Summary)
	}
}

func TestInterruptedIsAnError(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the tiny model")
	}
	tinyEnv(t)
	env := runEnv(t)
	env.Logger = discardLogger()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := decode(t, tinySrc).Run(ctx, env)
	if !errors.Is(err, mltrain.ErrInterrupted) {
		t.Fatalf("a cancelled run returned %v, want an interruption error", err)
	}
	if _, err := os.Stat(env.OutputPath("adapter")); err == nil {
		t.Error("an interrupted run wrote its adapter output")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func countTrue(m []bool) int {
	n := 0
	for _, b := range m {
		if b {
			n++
		}
	}
	return n
}

// TestResumeGivesSameAdapter interrupts a stage run as soon as its first
// checkpoint exists, runs it again, and compares the adapter with an
// uninterrupted run's, byte for byte.
func TestResumeGivesSameAdapter(t *testing.T) {
	if testing.Short() {
		t.Skip("trains the tiny model three times")
	}
	tinyEnv(t)
	src := strings.Replace(tinySrc, "grad_accum = 2", "grad_accum = 1", 1)
	full := runEnv(t)
	full.Logger = discardLogger()
	if err := decode(t, src).Run(t.Context(), full); err != nil {
		t.Fatal(err)
	}

	env := runEnv(t)
	env.Logger = discardLogger()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if ms, _ := filepath.Glob(filepath.Join(env.WorkDir, ".pipe/train/*/checkpoints/checkpoint-*/progress.json")); len(ms) > 0 {
				cancel()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	err := decode(t, src).Run(ctx, env)
	cancel()
	<-done
	if !errors.Is(err, mltrain.ErrInterrupted) {
		t.Fatalf("the interrupted run returned %v", err)
	}
	out, _ := os.ReadDir(env.OutDir)
	if len(out) != 0 {
		t.Fatalf("the interrupted run wrote outputs: %v", out)
	}
	if err := decode(t, src).Run(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	var rep mltrain.Report
	b, _ := os.ReadFile(env.OutputPath("report"))
	json.Unmarshal(b, &rep)
	if rep.ResumedAtStep == 0 || rep.ResumedAtStep >= rep.Steps {
		t.Fatalf("resumed at step %d of %d", rep.ResumedAtStep, rep.Steps)
	}
	for _, name := range []string{"adapter", "last_adapter"} {
		a, err := os.ReadFile(filepath.Join(full.OutputPath(name), "adapter_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(env.OutputPath(name), "adapter_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Errorf("%s differs after interruption and resume", name)
		}
	}
}
