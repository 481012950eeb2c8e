package lengths

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/stages/stagestest"
	"github.com/pipeml/pipe/tokenizer"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func decode(t testing.TB, src string) *Stage {
	t.Helper()
	return stagestest.Decode(t, Definition, src).(*Stage)
}

func newEnv(t testing.TB, inputs ...string) *stages.Env {
	t.Helper()
	return &stages.Env{
		Stage:       "test",
		Kind:        Definition.Name,
		Inputs:      map[string]stages.Input{"records": {Name: "records", Paths: inputs}},
		OutDir:      t.TempDir(),
		TempDir:     t.TempDir(),
		Parallelism: 1,
		Summary:     map[string]any{},
	}
}

func writeRecords(t testing.TB, path string, recs ...*artifacts.Record) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := artifacts.NewRecordWriter(&buf)
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func chat(source, user, assistant string) *artifacts.Record {
	return &artifacts.Record{
		Messages: []artifacts.Message{{Role: "user", Content: user}, {Role: "assistant", Content: assistant}},
		Meta:     map[string]any{"source": source, "group": "g"},
	}
}

func fim(source, prefix, suffix, middle string) *artifacts.Record {
	return &artifacts.Record{
		Prompt:     "<|fim_prefix|>" + prefix + "<|fim_suffix|>" + suffix + "<|fim_middle|>",
		Completion: middle + "<|endoftext|>",
		Meta:       map[string]any{"source": source, "group": "g"},
	}
}

func readReport(t testing.TB, env *stages.Env) (*Report, []byte) {
	t.Helper()
	b, err := os.ReadFile(env.OutputPath("report"))
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r, b
}

func TestPercentilesAndMaxLen(t *testing.T) {
	var xs []int
	for i := 1; i <= 100; i++ {
		xs = append(xs, i*10) // 10, 20, ..., 1000
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
	st := computeStats(xs)
	want := Stats{Count: 100, Tokens: 50500, Min: 10, Max: 1000, Mean: 505, P50: 500, P90: 900, P95: 950, P99: 990}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	tests := []struct {
		lengths  []int
		keep     float64
		multiple int
		want     int
	}{
		{xs, 0.95, 64, 960}, // P95 950 -> 15*64
		{xs, 0.95, 1, 950},
		{xs, 1, 64, 1024},
		{[]int{7}, 0.95, 64, 64},
		{[]int{64, 64, 64}, 0.95, 64, 64},
		{[]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 1000}, 0.9, 8, 16}, // the 10th record is the 5% tail... of 10% here
		{[]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 1000}, 0.95, 8, 1000},
	}
	for _, tt := range tests {
		sorted := slices.Sorted(slices.Values(tt.lengths))
		got := maxLenFor(sorted, tt.keep, tt.multiple)
		if got != tt.want {
			t.Errorf("maxLenFor(%v, %g, %d) = %d, want %d", tt.lengths, tt.keep, tt.multiple, got, tt.want)
		}
		if got%tt.multiple != 0 {
			t.Errorf("max_len %d is not a multiple of %d", got, tt.multiple)
		}
		if k := keptShare(sorted, got); k < tt.keep {
			t.Errorf("max_len %d keeps %g < %g", got, k, tt.keep)
		}
	}
	if got := computeStats(nil); got != (Stats{}) {
		t.Errorf("stats of nothing = %+v", got)
	}
}

func TestGolden(t *testing.T) {
	dir := t.TempDir()
	writeRecords(t, filepath.Join(dir, "logs", "a.jsonl"),
		chat("claude_logs", "Fix the failing test", "The test fails because the map is nil."),
		chat("claude_logs", "hi", "Hello."),
	)
	writeRecords(t, filepath.Join(dir, "logs", "nested", "b.jsonl"),
		chat("claude_logs", strings.Repeat("word ", 200), "ok"),
	)
	writeRecords(t, filepath.Join(dir, "fim.jsonl"),
		fim("fim:pipe", "func f() {\n", "}\n", "\treturn\n"),
		fim("fim:pipe", "package p\n\nimport \"fmt\"\n\nfunc main() {\n", "}\n", "\tfmt.Println(\"hi\")\n"),
		&artifacts.Record{Prompt: "no meta ", Completion: "here"},
	)
	// A bad line and a record the tokenizer rejects are reported, not fatal.
	f, err := os.OpenFile(filepath.Join(dir, "fim.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("{not json\n{\"prompt\":\"only a prompt\"}\n")
	f.Close()

	env := newEnv(t, filepath.Join(dir, "logs"), filepath.Join(dir, "fim.jsonl"))
	if err := decode(t, "").Run(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	rep, data := readReport(t, env)
	// The file names in "bad" are base names, so the golden file does
	// not depend on the temporary folder.
	golden(t, "golden/report.json", data)

	// Independent checks of the figures in the golden file.
	tok := testTokenizer(t)
	count := func(r *artifacts.Record) int {
		ids, _, err := tok.EncodeRecord(r, false)
		if err != nil {
			t.Fatal(err)
		}
		return len(ids)
	}
	short := count(chat("", "hi", "Hello."))
	if got := rep.BySource["claude_logs"].Min; got != short {
		t.Errorf("claude_logs min = %d, want %d (the 'hi' record)", got, short)
	}
	if got := rep.BySource["unknown"].Count; got != 1 {
		t.Errorf("%d records without a source, want 1", got)
	}
	if rep.Overall.Count != 6 || rep.Files != 3 || rep.BadLines != 2 {
		t.Errorf("count %d, files %d, bad %d; want 6, 3, 2", rep.Overall.Count, rep.Files, rep.BadLines)
	}
	long := count(chat("", strings.Repeat("word ", 200), "ok"))
	if rep.Overall.Max != long || rep.MaxLen != (long+63)/64*64 {
		t.Errorf("max %d, max_len %d; want %d and %d (P95 of 6 records is the longest)", rep.Overall.Max, rep.MaxLen, long, (long+63)/64*64)
	}
	if env.Summary["max_len"] != rep.MaxLen {
		t.Errorf("summary max_len %v, report %d", env.Summary["max_len"], rep.MaxLen)
	}
	checkPNG(t, env.OutputPath("histogram"), []string{"claude_logs", "fim:pipe", "unknown"})
}

// checkPNG decodes the histogram and checks that it is a real plot: the
// right size, mostly white, with each source's colour present.
func checkPNG(t *testing.T, path string, sources []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != plotW || b.Dy() != plotH {
		t.Fatalf("histogram is %v, want %dx%d", b, plotW, plotH)
	}
	seen := map[color.RGBA]int{}
	for y := 0; y < plotH; y++ {
		for x := 0; x < plotW; x++ {
			r, g, b, a := img.At(x, y).RGBA()
			seen[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}]++
		}
	}
	if seen[white] < plotW*plotH/2 {
		t.Errorf("histogram is not mostly white background")
	}
	if seen[markerRed] == 0 {
		t.Errorf("no max_len marker")
	}
	for i := range sources {
		if seen[palette[i]] < 50 {
			t.Errorf("source %s: %d pixels of its colour", sources[i], seen[palette[i]])
		}
	}
}

func TestDeterminism(t *testing.T) {
	dir := t.TempDir()
	var inputs []string
	for i := range 6 {
		p := filepath.Join(dir, "in"+string(rune('a'+i))+".jsonl")
		var recs []*artifacts.Record
		for j := range 20 {
			recs = append(recs, fim("fim:r"+string(rune('0'+i%3)), strings.Repeat("x := 1\n", j+i), "}\n", "y\n"))
			recs = append(recs, chat("claude_logs", strings.Repeat("why? ", 3*j+i), "because"))
		}
		writeRecords(t, p, recs...)
		inputs = append(inputs, p)
	}
	ref := newEnv(t, inputs...)
	if err := decode(t, "").Run(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	_, wantReport := readReport(t, ref)
	wantPNG, err := os.ReadFile(ref.OutputPath("histogram"))
	if err != nil {
		t.Fatal(err)
	}
	reversed := slices.Clone(inputs)
	slices.Reverse(reversed)
	env := newEnv(t, reversed...)
	runEngineLike(t, env, decode(t, ""), 3, 9)
	_, gotReport := readReport(t, env)
	gotPNG, err := os.ReadFile(env.OutputPath("histogram"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotReport, wantReport) {
		t.Errorf("report differs:\n%s\nwant:\n%s", gotReport, wantReport)
	}
	if !bytes.Equal(gotPNG, wantPNG) {
		t.Errorf("histogram differs")
	}
}

// TestManySources checks the legend's "other" series and an empty run.
func TestManySources(t *testing.T) {
	dir := t.TempDir()
	var recs []*artifacts.Record
	for i := range 12 {
		for j := range 5 {
			recs = append(recs, chat("src"+string(rune('a'+i)), strings.Repeat("a ", 10*i+j), "b"))
		}
	}
	writeRecords(t, filepath.Join(dir, "r.jsonl"), recs...)
	env := newEnv(t, dir)
	if err := decode(t, "bins = 25\nkeep = 0.5\nmultiple = 1\n").Run(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	rep, _ := readReport(t, env)
	if len(rep.BySource) != 12 || rep.MaxLen != rep.Overall.P50 {
		t.Errorf("%d sources, max_len %d, P50 %d", len(rep.BySource), rep.MaxLen, rep.Overall.P50)
	}
	h := binData([]series{{"a", []int{1}}, {"b", []int{2}}, {"c", []int{3}}, {"d", []int{4}}, {"e", []int{5}},
		{"f", []int{6}}, {"g", []int{7}}, {"h", []int{8}}, {"i", []int{9}}}, 10)
	if len(h.names) != len(palette) || h.names[len(palette)-1] != "other" {
		t.Errorf("series %v, want %d with the last called other", h.names, len(palette))
	}

	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	writeRecords(t, empty)
	env = newEnv(t, empty)
	if err := decode(t, "").Run(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	if rep, _ := readReport(t, env); rep.Overall.Count != 0 || rep.MaxLen != 0 {
		t.Errorf("empty input: %+v", rep)
	}
}

func TestParameterErrors(t *testing.T) {
	for _, src := range []string{"keep = 0", "keep = 1.5", "multiple = 0", "bins = 0"} {
		f, _ := hclparse.NewParser().ParseHCL([]byte(src), "test.hcl")
		v, diags := hcldec.Decode(f.Body, Definition.Spec, nil)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		if _, diags := Definition.New(v); !diags.HasErrors() {
			t.Errorf("%q: no error", src)
		}
	}
}

func TestNiceStep(t *testing.T) {
	for _, tt := range []struct {
		x    float64
		want int
	}{{0.3, 1}, {1, 1}, {1.5, 2}, {3, 5}, {7, 10}, {10, 10}, {11, 20}, {41.2, 50}, {160, 200}} {
		if got := niceStep(tt.x); got != tt.want {
			t.Errorf("niceStep(%g) = %d, want %d", tt.x, got, tt.want)
		}
	}
}

func testTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Default()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// runEngineLike drives m as the engine does: items visited in a shuffled
// order by several goroutines, results reduced in that order.
func runEngineLike(t testing.TB, env *stages.Env, m stages.Mapper, workers int, shuffleSeed uint64) {
	t.Helper()
	ctx := context.Background()
	items, err := m.Items(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	rand.New(rand.NewPCG(shuffleSeed, 1)).Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	outs := make([][]byte, len(items))
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var buf bytes.Buffer
				errs[i] = m.Map(ctx, env, items[i], &buf)
				outs[i] = buf.Bytes()
			}
		}()
	}
	for i := range items {
		next <- i
	}
	close(next)
	wg.Wait()
	results := make([]stages.ItemResult, len(items))
	for i := range items {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		data := outs[i]
		results[i] = stages.ItemResult{Item: items[i], Open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}}
	}
	if err := m.Reduce(ctx, env, results); err != nil {
		t.Fatal(err)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n%s", path, cmp.Diff(string(want), string(got)))
	}
}

func TestDocCoversParameters(t *testing.T) {
	if first, _, _ := strings.Cut(Definition.Doc, "\n"); first == "" {
		t.Errorf("Doc has no title line")
	}
	for name := range Definition.Spec {
		if !strings.Contains(Definition.Doc, "`"+name+"`") {
			t.Errorf("parameter %s is not documented", name)
		}
	}
}

func TestKeyParts(t *testing.T) {
	s := decode(t, "")
	parts, err := s.KeyParts(t.Context(), newEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if !artifacts.Digest(parts["tokenizer/tokenizer.json"]).Valid() {
		t.Errorf("key parts %v lack the default tokenizer's digest", parts)
	}
	env := newEnv(t)
	env.Inputs["tokenizer"] = stages.Input{Name: "tokenizer", Paths: []string{t.TempDir()}}
	if parts, err := s.KeyParts(t.Context(), env); err != nil || len(parts) != 0 {
		t.Errorf("with a tokenizer input: %v, %v; want nothing (the engine hashes inputs)", parts, err)
	}
}
