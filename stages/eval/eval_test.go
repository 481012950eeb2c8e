package eval

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	_ "github.com/gomlx/compute/gobackend"
	"github.com/hashicorp/hcl/v2"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/ml/checkpoint"
	mleval "github.com/pipeml/pipe/ml/eval"
	"github.com/pipeml/pipe/ml/qwen2"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/stages/stagestest"
	"github.com/pipeml/pipe/tokenizer"
)

func decode(t testing.TB, src string) (*Stage, hcl.Diagnostics) {
	t.Helper()
	st, diags := stagestest.TryDecode(Definition, src)
	if diags.HasErrors() {
		return nil, diags
	}
	return st.(*Stage), nil
}

func TestInvalidParameters(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`dtype = "float16"`, "Invalid dtype"},
		{`quantization = "int4"`, "Invalid quantization"},
		{`overlong = "wrap"`, "Invalid overlong"},
		{`max_len = 32`, "Invalid max_len"},
		{`max_new_tokens = 4096`, "Invalid max_new_tokens"},
		{`adapter_names = ["base"]`, "Invalid adapter_names"},
		{`adapter_names = ["a", "a"]`, "Invalid adapter_names"},
		{`base_model = ""`, "Invalid base_model"},
		{`max_len = "long"`, "a number is required"},
	} {
		_, diags := decode(t, c.src)
		if !diags.HasErrors() || !strings.Contains(diags.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.src, diags, c.want)
		}
	}
}

// TestDocumentsEveryParameter checks that Doc names each parameter with
// its default.
func TestDocumentsEveryParameter(t *testing.T) {
	for name := range spec {
		if !regexp.MustCompile("`" + name + "` \\([a-z ]+, default ").MatchString(Definition.Doc) {
			t.Errorf("Doc does not document %s with its default", name)
		}
	}
}

// TestRun runs the stage on the tiny model with two adapters of
// different shapes whose B matrices are zero (PEFT's initialisation): the
// tuned models must score exactly like the base, the outputs must be
// written, and a second run must give the same bytes.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("evaluates the tiny model twice")
	}
	tokDir := tokenizer.DefaultDir()
	if tokDir == "" {
		t.Fatal("the Qwen2.5 tokenizer is needed (go tool task deps fetches it)")
	}
	t.Setenv("PIPE_TOKENIZER", tokDir)
	t.Setenv("PIPE_CACHE_DIR", t.TempDir())
	t.Setenv("GOMLX_NO_AUTO_INSTALL", "1")

	dir := t.TempDir()
	tiny, err := checkpoint.EnsureTiny("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := qwen2.Load(tiny, qwen2.Options{DType: dtypes.Float32})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddLoRA(qwen2.LoRAConfig{Rank: 2, Alpha: 4, Targets: []string{qwen2.ProjQ, qwen2.ProjV}}, 3); err != nil {
		t.Fatal(err)
	}
	// A training run folder: the stage picks best/.
	if err := m.ExportAdapter(filepath.Join(dir, "run", "best"), "tiny"); err != nil {
		t.Fatal(err)
	}
	// A second adapter of another shape: the stage reloads the base for it.
	m2, err := qwen2.Load(tiny, qwen2.Options{DType: dtypes.Float32})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.AddLoRA(qwen2.LoRAConfig{Rank: 3, Alpha: 3}, 4); err != nil {
		t.Fatal(err)
	}
	if err := m2.ExportAdapter(filepath.Join(dir, "other"), "tiny"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := artifacts.NewRecordWriter(&buf)
	for i := range 3 {
		w.Write(&artifacts.Record{
			Messages: []artifacts.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: fmt.Sprintf("What is %d+%d?", i, i)}, {Role: "assistant", Content: fmt.Sprint(2 * i)}},
			Meta:     map[string]any{"source": "claude_logs", "group": fmt.Sprint(i)},
		})
		w.Write(&artifacts.Record{
			Prompt:     fmt.Sprintf("<|fim_prefix|>func f%d() int {\n<|fim_suffix|>}\n<|fim_middle|>", i),
			Completion: fmt.Sprintf("\treturn %d\n<|endoftext|>", i),
			Meta:       map[string]any{"source": "fim:demo", "group": fmt.Sprint("f", i)},
		})
	}
	w.Flush()
	records := filepath.Join(dir, "eval.jsonl")
	if err := os.WriteFile(records, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	st, diags := decode(t, `
max_len = 256
max_new_tokens = 6
chat_samples = 2
chat_max_new_tokens = 5
batch_size = 2
`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	run := func() (*stages.Env, []byte) {
		env := &stages.Env{
			Stage: "eval", Kind: Definition.Name, WorkDir: dir,
			Inputs: map[string]stages.Input{
				"records":  {Name: "records", Paths: []string{records}},
				"adapters": {Name: "adapters", Paths: []string{filepath.Join(dir, "run"), filepath.Join(dir, "other")}},
			},
			OutDir: t.TempDir(), TempDir: t.TempDir(), Parallelism: 1,
			Logger: slog.New(slog.DiscardHandler), Summary: map[string]any{},
		}
		if err := st.Run(t.Context(), env); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(env.OutputPath("report"))
		if err != nil {
			t.Fatal(err)
		}
		return env, b
	}
	env, first := run()
	var rep mleval.Report
	if err := json.Unmarshal(first, &rep); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rep.Models, ","); got != "base,tuned1,tuned2" {
		t.Errorf("models %s", got)
	}
	b := rep.Loss["base"]
	for _, name := range []string{"tuned1", "tuned2"} {
		tu := rep.Loss[name]
		if b.All.Tokens == 0 || b.All.Loss != tu.All.Loss || b.ByKind["fim"].Loss != tu.ByKind["fim"].Loss {
			t.Errorf("a zero adapter changed the loss: base %+v, %s %+v", b.All, name, tu.All)
		}
	}
	if a := rep.Adapters["tuned2"]; a.Rank != 3 || len(a.Targets) != 7 {
		t.Errorf("tuned2 adapter %+v", a)
	}
	if rep.FIM == nil || rep.FIM.Examples != 3 {
		t.Fatalf("FIM: %+v", rep.FIM)
	}
	for _, s := range rep.FIM.Samples {
		if s.Results["base"].Output != s.Results["tuned1"].Output || s.Results["base"].Output != s.Results["tuned2"].Output {
			t.Errorf("%s: base %q, tuned %q and %q", s.Where, s.Results["base"].Output, s.Results["tuned1"].Output, s.Results["tuned2"].Output)
		}
	}
	if len(rep.Chat) != 2 || rep.Chat[1].Prompt != "What is 1+1?" || rep.Chat[1].System != "Be brief." {
		t.Errorf("chat samples %+v", rep.Chat)
	}
	for _, f := range []string{mleval.ReportFile, mleval.MarkdownFile, mleval.LossChartFile, mleval.FIMChartFile} {
		if _, err := os.Stat(filepath.Join(env.OutputPath("page"), f)); err != nil {
			t.Error(err)
		}
	}
	if rep.DType != dtypes.Float32.String() {
		t.Errorf("dtype %s on the CPU, want float32", rep.DType)
	}
	if _, ok := env.Summary["tuned2.eval_loss"]; !ok {
		t.Errorf("summary %v", env.Summary)
	}
	env2, second := run()
	if !bytes.Equal(first, second) {
		t.Errorf("the report differs between two runs")
	}
	md1, _ := os.ReadFile(filepath.Join(env.OutputPath("page"), mleval.MarkdownFile))
	md2, _ := os.ReadFile(filepath.Join(env2.OutputPath("page"), mleval.MarkdownFile))
	if !bytes.Equal(md1, md2) {
		t.Errorf("report.md differs between two runs")
	}
}
