package eval

import (
	"encoding/json"
	"fmt"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	_ "github.com/gomlx/compute/gobackend"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/ml/checkpoint"
	"github.com/pipeml/pipe/ml/qwen2"
	"github.com/pipeml/pipe/ml/safetensors"
	"github.com/pipeml/pipe/ml/train"
	"github.com/pipeml/pipe/tokenizer"
)

func testBackend(t testing.TB) compute.Backend {
	t.Helper()
	b, err := compute.NewWithConfig(train.GoBackend)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func testTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Default()
	if err != nil {
		t.Fatalf("the Qwen2.5 tokenizer is needed (go tool task deps fetches it): %v", err)
	}
	return tok
}

func writeRecords(t testing.TB, path string, recs []*artifacts.Record) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := artifacts.NewRecordWriter(f)
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// The pattern the adapter learns: whatever the code around it, the
// middle is patternMiddle.
var randomStd = 0.5

const patternMiddle = "\treturn nil\n"

var words = []string{"alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta", "zeta", "lambda"}

func patternRecord(i int, source string) *artifacts.Record {
	name := words[i%len(words)] + words[(i/len(words)+3)%len(words)]
	prefix := fmt.Sprintf("func %s(x int) error {\n", name)
	suffix := fmt.Sprintf("}\n\n// %s ends here.\n", name)
	return &artifacts.Record{
		Prompt:     "<|fim_prefix|>" + prefix + "<|fim_suffix|>" + suffix + "<|fim_middle|>",
		Completion: patternMiddle + "<|endoftext|>",
		Meta:       map[string]any{"source": source, "group": name, "path": name + ".go"},
	}
}

func chatRecord(i int) *artifacts.Record {
	return &artifacts.Record{
		Messages: []artifacts.Message{
			{Role: "user", Content: "Say the word " + words[i%len(words)]},
			{Role: "assistant", Content: "ok"},
		},
		Meta: map[string]any{"source": "claude_logs", "group": fmt.Sprint("s", i)},
	}
}

// trainPatternAdapter trains a LoRA adapter on the tiny model to produce
// patternMiddle and returns the model folder and the adapter folder.
func trainPatternAdapter(t *testing.T, backend compute.Backend, tok *tokenizer.Tokenizer) (base, adapter string) {
	t.Helper()
	// The tiny model's shape with larger weights than the default 0.02:
	// its frozen LM head then spans logits wide enough for an adapter to
	// make the pattern likely (at 0.02 the loss cannot fall much below
	// ln(vocab)).
	base = filepath.Join(t.TempDir(), "tiny-wide")
	if err := checkpoint.WriteRandom(base, checkpoint.TinyConfig(), checkpoint.RandomOptions{Seed: 7, DType: safetensors.F32, Std: randomStd}); err != nil {
		t.Fatal(err)
	}
	var recs []*artifacts.Record
	for i := range 24 {
		recs = append(recs, patternRecord(i, "fim:train"))
	}
	path := writeRecords(t, filepath.Join(t.TempDir(), "train.jsonl"), recs)
	exs, _, err := train.LoadExamples([]string{path}, tok.EncodeRecord, false, 64, train.Truncate)
	if err != nil {
		t.Fatal(err)
	}
	m, err := qwen2.Load(base, qwen2.Options{DType: dtypes.Float32})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddLoRA(qwen2.LoRAConfig{Rank: 8, Alpha: 16}, 1); err != nil {
		t.Fatal(err)
	}
	run := t.TempDir()
	batches := train.Pack(exs, 64, 1)
	_, err = train.Train(t.Context(), train.Options{
		Backend: backend, Model: train.Qwen2(m, "tiny", true),
		Train: batches, Epochs: max(1, 40/len(batches)), LearningRate: 2e-2, Schedule: train.Constant,
		Seed: 1, RunDir: run, Fingerprint: "eval-pattern", Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return base, filepath.Join(run, train.LastDir)
}

// TestAdapterBeatsBase trains an adapter (ml/train, a few dozen steps) to
// fill a fixed middle, evaluates base and tuned on held-out records of
// the same pattern, and checks that the tuned model has the lower loss and
// the better FIM scores, and that the report renders.
func TestAdapterBeatsBase(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a tiny adapter for a few dozen steps")
	}
	backend := testBackend(t)
	tok := testTokenizer(t)
	base, adapter := trainPatternAdapter(t, backend, tok)

	dir := t.TempDir()
	var evalRecs []*artifacts.Record
	for i := 100; i < 106; i++ {
		evalRecs = append(evalRecs, patternRecord(i, "fim:held_out"), chatRecord(i))
	}
	evalPath := writeRecords(t, filepath.Join(dir, "eval.jsonl"), evalRecs)
	extra := writeRecords(t, filepath.Join(dir, "more_fim.jsonl"), []*artifacts.Record{patternRecord(200, "fim:other"), chatRecord(7)})

	rep, err := Evaluate(t.Context(), Options{
		Backend: backend, Model: "tiny", BaseDir: base, ModelOptions: qwen2.Options{DType: dtypes.Float32},
		Adapters:  []Adapter{{Name: "tuned", Dir: adapter}},
		Tokenizer: tok,
		RenderChat: func(msgs []artifacts.Message) (string, error) {
			return tokenizer.RenderChat(msgs, nil, true)
		},
		Records: []string{evalPath}, FIMFiles: []string{extra},
		Logger: testLogger(t), MaxLen: 128, BatchSize: 2, MaxNewTokens: 8, ChatSamples: 2, ChatMaxNewTokens: 6,
	})
	if err != nil {
		t.Fatal(err)
	}
	bl, tl := rep.Loss["base"], rep.Loss["tuned"]
	if got, want := rep.Data.Examples, 12; got != want {
		t.Errorf("%d loss examples, want %d", got, want)
	}
	fimB, fimT := bl.ByKind[KindFIM], tl.ByKind[KindFIM]
	t.Logf("FIM loss: base %.3f, tuned %.3f; all: base %.3f, tuned %.3f", fimB.Loss, fimT.Loss, bl.All.Loss, tl.All.Loss)
	if !(fimT.Loss < fimB.Loss-1) {
		t.Errorf("tuned FIM loss %.3f is not well below the base's %.3f", fimT.Loss, fimB.Loss)
	}
	if s := tl.BySource["fim:held_out"]; s == nil || s.Examples != 6 {
		t.Errorf("by source: %+v", tl.BySource)
	}
	if rep.FIM == nil || rep.FIM.Examples != 7 {
		t.Fatalf("FIM report: %+v", rep.FIM)
	}
	sb, st := rep.FIM.Scores["base"], rep.FIM.Scores["tuned"]
	t.Logf("FIM exact middle: base %.2f, tuned %.2f; edit similarity: base %.3f, tuned %.3f", sb.ExactMiddle, st.ExactMiddle, sb.EditSimilarity, st.EditSimilarity)
	if !(st.EditSimilarity > sb.EditSimilarity) || !(st.ExactFirstLine > sb.ExactFirstLine) {
		t.Errorf("tuned FIM scores %+v are not above the base's %+v", st, sb)
	}
	if st.ExactMiddle < 0.5 {
		t.Errorf("tuned exact-middle rate %.2f: the adapter did not learn the pattern; first output %q", st.ExactMiddle, rep.FIM.Samples[0].Results["tuned"].Output)
	}
	// The per-sample scores agree with the scorers.
	for _, s := range rep.FIM.Samples {
		for m, r := range s.Results {
			if r.ExactMiddle != ExactMiddle(r.Output, s.Reference) || r.EditSimilarity != EditSimilarity(r.Output, s.Reference) {
				t.Errorf("%s %s: scores %+v do not match the output", s.Where, m, r)
			}
		}
	}
	if len(rep.Chat) != 2 || rep.Chat[0].Prompt != "Say the word "+words[100%len(words)] || rep.Chat[0].Answers["tuned"] == "" && rep.Chat[0].Answers["base"] == "" {
		t.Errorf("chat samples: %+v", rep.Chat)
	}

	// EVAL_REPORT_DIR keeps the rendered report for a look.
	out := os.Getenv("EVAL_REPORT_DIR")
	if out == "" {
		out = t.TempDir()
	}
	if err := rep.Write(out); err != nil {
		t.Fatal(err)
	}
	checkWritten(t, out, rep)
}

// checkWritten checks that eval_report.json reads back, report.md links
// each chart and every chart is a PNG of sensible size.
func checkWritten(t *testing.T, out string, rep *Report) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Loss["tuned"].All.Loss != rep.Loss["tuned"].All.Loss {
		t.Errorf("JSON round trip changed the loss")
	}
	md, err := os.ReadFile(filepath.Join(out, MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Loss and perplexity", "## FIM infilling", "## Chat samples", "| fim:held_out |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, name := range []string{LossChartFile, FIMChartFile, LengthChartFile} {
		if !strings.Contains(string(md), "]("+name+")") {
			t.Errorf("report.md does not show %s", name)
		}
		f, err := os.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if w, h := img.Bounds().Dx(), img.Bounds().Dy(); w != chartWidth || h < 150 {
			t.Errorf("%s is %dx%d", name, w, h)
		}
	}
}
