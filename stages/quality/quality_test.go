package quality

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/tokenizer"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// decode builds a stage from an HCL body through the kind's own Spec, as
// the engine does.
func decode(t testing.TB, src string) *stage {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	val, diags := hcldec.Decode(f.Body, Definition.Spec, nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	st, diags := Definition.New(val)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return st.(*stage)
}

// run runs s on inputs and returns its outputs by name.
func run(t testing.TB, s *stage, par int, inputs ...string) map[string][]byte {
	t.Helper()
	env := &stages.Env{
		Stage: "q", Kind: "quality",
		Inputs:      map[string]stages.Input{"records": {Name: "records", Paths: inputs}},
		OutDir:      t.TempDir(),
		TempDir:     t.TempDir(),
		Parallelism: par,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if err := s.Run(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, o := range Definition.Outputs {
		b, err := os.ReadFile(env.OutputPath(o.Name))
		if err != nil {
			t.Fatal(err)
		}
		out[o.Name] = b
	}
	return out
}

func writeLines(t testing.TB, dir, name string, lines []string, trailingNewline bool) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
		t.Fatal(err)
	}
	s := strings.Join(lines, "\n")
	if trailingNewline {
		s += "\n"
	}
	if err := os.WriteFile(p, []byte(s), 0o666); err != nil {
		t.Fatal(err)
	}
	return p
}

// A made-up AWS access key id, split so that no scanner flags this file.
var awsKey = "AKIA" + "Q3EGRJ5VX2M4TN7B"

const longAnswer = "The test fails because the handler closes the response body before the " +
	"decoder has read it, so the second read returns an error that the retry loop " +
	"swallows; move the deferred close after the decode, check the error of the " +
	"first read, and add a regression test that serves a slow body from httptest " +
	"so the race shows up reliably on every run of the suite."

func chat(group, user, answer string) string {
	b, _ := json.Marshal(map[string]any{
		"messages": []map[string]any{
			{"role": "system", "content": "You are a precise coding assistant."},
			{"role": "user", "content": user},
			{"role": "assistant", "content": answer},
		},
		"meta": map[string]any{"source": "claude_logs", "group": group},
	})
	return string(b)
}

func fim(group, prefix, suffix, middle string) string {
	b, _ := json.Marshal(map[string]any{
		"prompt":     "<|fim_prefix|>" + prefix + "<|fim_suffix|>" + suffix + "<|fim_middle|>",
		"completion": middle,
		"meta":       map[string]any{"source": "fim:demo", "group": group},
	})
	return string(b)
}

const goFile = "package demo\n\nimport \"fmt\"\n\n// Greet prints a greeting for name.\nfunc Greet(name string) {\n\tmsg := fmt.Sprintf(\"hello, %s\", name)\n\tfmt.Println(msg)\n}\n"

// goldenInput writes the hand-made input of the golden test: one chat
// file with a truncated last line and one FIM file.
func goldenInput(t testing.TB, dir string) []string {
	nearCopy := strings.Replace(longAnswer, "reliably", "consistently", 1)
	logs := []string{
		chat("s1", "Why does TestFetch fail?", longAnswer),
		chat("s2", "Why  does TestFetch\tfail?", longAnswer+"\n"), // same content, other spacing
		`{"messages":[{"role":"user","content":"hi there"},{"role":"bot","content":"hello there friend"}],"meta":{"source":"claude_logs","group":"s3"}}`,
		`{"messages":[{"role":"user","content":"list files"},{"role":"assistant","content":"","tool_calls":[{"type":"function","function":{"name":"Bash","arguments":"ls -la"}}]}],"meta":{"source":"claude_logs","group":"s4"}}`,
		`{"messages":[{"role":"user","content":"  "},{"role":"assistant","content":"What do you need?"}],"meta":{"source":"claude_logs","group":"s5"}}`,
		chat("s6", "Is it fixed now?", "ok"),
		chat("s7", "Deploy with key "+awsKey+" please", "I will not use a key pasted in chat; rotate it."),
		`{"messages": [`,
		chat("s8", "Why does TestFetch fail?", nearCopy),
		`{"messages":[{"role":"user","content":"Run the tests"},{"role":"assistant","content":"Running them.","tool_calls":[{"type":"function","function":{"name":"Bash","arguments":{"command":"go test ./..."}}}]},{"role":"tool","content":"ok  \tdemo\t0.01s"},{"role":"assistant","content":"All tests pass."}],"meta":{"source":"claude_logs","group":"s9"}}`,
		`[1, 2, 3]`,
		`{"messages":[{"role":"user","content":"trunc`,
	}
	fims := []string{
		fim("demo/greet.go", goFile[:60], goFile[90:], goFile[60:90]),
		fim("demo/long.go", "package demo\n\nvar table = \"", "\"\n", strings.Repeat("x", 1200)),
		fim("demo/gen.pb.go", "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage demo\n\nfunc A() int {\n", "}\n", "\treturn 1\n"),
		fim("demo/art.go", "// ", "\n", strings.Repeat("=+-*/ {}\n", 40)),
		fim("demo/greet.go", goFile[:100], goFile[120:], goFile[100:120]),
		fim("demo/empty.go", "package demo\n", "\n", "  \n"),
	}
	return []string{
		writeLines(t, dir, "logs/claude.jsonl", logs, false),
		writeLines(t, dir, "fim.jsonl", fims, true),
	}
}

func TestGolden(t *testing.T) {
	dir := t.TempDir()
	in := goldenInput(t, dir)
	// max_tokens = 0: the golden outputs must not depend on tokenizer
	// files; TestTooLong covers the token limit.
	s := decode(t, "max_tokens = 0\n")
	got := run(t, s, 2, filepath.Join(dir, "logs"), in[1])
	for _, name := range []string{"records", "rejected", "report"} {
		path := filepath.Join("testdata", "golden", name+".golden")
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got[name], 0o666); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[name], want) {
			t.Errorf("%s differs from %s (run with -update to rewrite):\n%s", name, path, got[name])
		}
	}
	for name, b := range got {
		if bytes.Contains(b, []byte(awsKey)) {
			t.Errorf("output %s holds the secret", name)
		}
	}
}

// TestDeterminism runs the stage with different parallelism and input
// order and compares the outputs byte for byte.
func TestDeterminism(t *testing.T) {
	dir := t.TempDir()
	in := goldenInput(t, dir)
	recs := synthetic(3000, 300, 7)
	var lines []string
	for _, r := range recs {
		b, _ := json.Marshal(r)
		lines = append(lines, string(b))
	}
	big := writeLines(t, dir, "big.jsonl", lines, true)
	s := decode(t, "max_tokens = 0\n")
	first := run(t, s, 1, in[0], in[1], big)
	for _, tc := range []struct {
		par    int
		inputs []string
	}{
		{4, []string{big, in[1], in[0]}},
		{3, []string{in[1], big, in[0], in[1]}},
	} {
		got := run(t, s, tc.par, tc.inputs...)
		for name := range first {
			if !bytes.Equal(first[name], got[name]) {
				t.Errorf("parallelism %d, inputs %v: output %s differs", tc.par, tc.inputs, name)
			}
		}
	}
}

// TestMalformed checks that bad lines are counted and reported with file
// and line, and that the good lines around them are kept.
func TestMalformed(t *testing.T) {
	dir := t.TempDir()
	p := writeLines(t, dir, "bad.jsonl", []string{
		chat("a", "first question here", longAnswer),
		`not json at all`,
		``,
		`null`,
		`{"messages":"a string"}`,
		chat("b", "second question here", "A complete and long enough answer."),
		`{"prompt":"<|fim_prefix|>x`,
	}, false)
	out := run(t, decode(t, "max_tokens = 0\n"), 2, p)
	var rep struct {
		RecordsIn, RecordsOut int
		MalformedLines        int `json:"malformed_lines"`
		Malformed             []struct {
			File  string
			Line  int
			Error string
		}
	}
	if err := json.Unmarshal(out["report"], &rep); err != nil {
		t.Fatal(err)
	}
	var where []string
	for _, m := range rep.Malformed {
		where = append(where, fmt.Sprintf("%s:%d", m.File, m.Line))
	}
	if want := []string{"bad.jsonl:2", "bad.jsonl:4", "bad.jsonl:5", "bad.jsonl:7"}; !slices.Equal(where, want) || rep.MalformedLines != 4 {
		t.Errorf("malformed lines %v (count %d), want %v", where, rep.MalformedLines, want)
	}
	if !strings.Contains(rep.Malformed[3].Error, "truncated") {
		t.Errorf("last line error %q does not say truncated", rep.Malformed[3].Error)
	}
	if n := bytes.Count(out["records"], []byte("\n")); n != 2 {
		t.Errorf("kept %d records, want 2", n)
	}
}

func TestSchema(t *testing.T) {
	for _, tc := range []struct {
		name, line, want string
	}{
		{"ok", `{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}`, ""},
		{"both", `{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}],"prompt":"p","completion":"c"}`, ReasonSchema},
		{"neither", `{"meta":{"source":"x"}}`, ReasonSchema},
		{"system late", `{"messages":[{"role":"user","content":"u"},{"role":"system","content":"s"},{"role":"assistant","content":"a"}]}`, ReasonSchema},
		{"assistant first", `{"messages":[{"role":"assistant","content":"a"},{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}`, ReasonSchema},
		{"no assistant", `{"messages":[{"role":"user","content":"u"}]}`, ReasonSchema},
		{"ends with tool", `{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"","tool_calls":[{"type":"function","function":{"name":"f","arguments":{}}}]},{"role":"tool","content":"r"}]}`, ReasonSchema},
		{"orphan tool", `{"messages":[{"role":"user","content":"u"},{"role":"tool","content":"r"},{"role":"assistant","content":"a"}]}`, ReasonToolCall},
		{"extra tool", `{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"","tool_calls":[{"type":"function","function":{"name":"f","arguments":{}}}]},{"role":"tool","content":"r"},{"role":"tool","content":"r"},{"role":"assistant","content":"a"}]}`, ReasonToolCall},
		{"two calls two results", `{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"","tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":{}}},{"id":"2","type":"function","function":{"name":"g","arguments":{"x":1}}}]},{"role":"tool","content":"r","tool_call_id":"2"},{"role":"tool","content":"","tool_call_id":"1"},{"role":"assistant","content":"a"}]}`, ""},
		{"unknown call id", `{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"","tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":{}}}]},{"role":"tool","content":"r","tool_call_id":"9"},{"role":"assistant","content":"a"}]}`, ReasonToolCall},
		{"call on user", `{"messages":[{"role":"user","content":"u","tool_calls":[{"type":"function","function":{"name":"f","arguments":{}}}]},{"role":"assistant","content":"a"}]}`, ReasonToolCall},
		{"no name", `{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a","tool_calls":[{"type":"function","function":{"name":"","arguments":{}}}]}]}`, ReasonToolCall},
		{"bad type", `{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a","tool_calls":[{"type":"fn","function":{"name":"f","arguments":{}}}]}]}`, ReasonToolCall},
		{"array args", `{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a","tool_calls":[{"type":"function","function":{"name":"f","arguments":[1]}}]}]}`, ReasonToolCall},
		{"bad tool sig", `{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}],"tools":[{"type":"function","function":"Bash"}]}`, ReasonSchema},
		{"pc", `{"prompt":"p","completion":"c"}`, ""},
		{"pc tools", `{"prompt":"p","completion":"c","tools":[{"type":"function","function":{"name":"f"}}]}`, ReasonSchema},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec artifacts.Record
			if err := json.Unmarshal([]byte(tc.line), &rec); err != nil {
				t.Fatal(err)
			}
			if got := checkSchema(&rec); got.reason != tc.want {
				t.Errorf("reason %q (%s), want %q", got.reason, got.detail, tc.want)
			}
		})
	}
}

func TestStats(t *testing.T) {
	st := statsOf("ab\r\n\nabcd\n")
	if st.maxLine != 4 || st.meanLine != 2 {
		t.Errorf("max %d mean %g, want 4 and 2", st.maxLine, st.meanLine)
	}
	// 6 letters over 6 characters and 3 line breaks (\r\n counts as one).
	if want := 6.0 / 9.0; st.alnumFrac != want {
		t.Errorf("alnum fraction %g, want %g", st.alnumFrac, want)
	}
}

// TestTooLong checks max_tokens with the real tokenizer: the count is the
// length of tokenizer.EncodeRecord's ids, and records the byte bound
// clears are not tokenized.
func TestTooLong(t *testing.T) {
	tok, err := tokenizer.Default()
	if err != nil {
		t.Skipf("tokenizer files not fetched (run go tool task deps): %v", err)
	}
	dir := t.TempDir()
	short := chat("a", "What is 2+2?", "It is 4, because two plus two is four.")
	long := chat("b", "Summarise this: "+strings.Repeat("lorem ipsum dolor sit amet ", 400), longAnswer)
	p := writeLines(t, dir, "r.jsonl", []string{short, long}, true)
	var rec artifacts.Record
	json.Unmarshal([]byte(long), &rec)
	ids, _, err := tok.EncodeRecord(&rec, false)
	if err != nil {
		t.Fatal(err)
	}
	limit := len(ids) - 1
	out := run(t, decode(t, fmt.Sprintf("max_tokens = %d\n", limit)), 2, p)
	if !bytes.Contains(out["rejected"], []byte(`"reject_reason":"too_long"`)) || !bytes.Contains(out["rejected"], []byte(fmt.Sprintf("%d tokens, maximum %d", len(ids), limit))) {
		t.Errorf("long record not rejected as too_long with its count:\n%s", out["rejected"])
	}
	var rep struct{ Tokenized int }
	json.Unmarshal(out["report"], &rep)
	if rep.Tokenized != 1 {
		t.Errorf("tokenized %d records, want 1 (the short one is below the byte bound)", rep.Tokenized)
	}
	out = run(t, decode(t, fmt.Sprintf("max_tokens = %d\n", len(ids))), 1, p)
	if n := bytes.Count(out["records"], []byte("\n")); n != 2 {
		t.Errorf("at max_tokens = %d kept %d records, want 2", len(ids), n)
	}
}

// TestTokenBound checks that the byte bound is never below the real
// count, on the golden records and the shared real transcripts' shapes.
func TestTokenBound(t *testing.T) {
	tok, err := tokenizer.Default()
	if err != nil {
		t.Skipf("tokenizer files not fetched (run go tool task deps): %v", err)
	}
	dir := t.TempDir()
	in := goldenInput(t, dir)
	for _, p := range in {
		b, _ := os.ReadFile(p)
		for _, line := range strings.Split(string(b), "\n") {
			var rec artifacts.Record
			if json.Unmarshal([]byte(line), &rec) != nil || checkSchema(&rec).reason != "" {
				continue
			}
			ids, _, err := tok.EncodeRecord(&rec, false)
			if err != nil {
				t.Fatal(err)
			}
			if b := tokenBound(&rec); b < len(ids) {
				t.Errorf("bound %d below the count %d for %.60s", b, len(ids), line)
			}
		}
	}
}

// TestTagMode checks that near_dup = "tag" keeps every member of a cluster
// and names the cluster in meta.near_dup_cluster.
func TestTagMode(t *testing.T) {
	dir := t.TempDir()
	p := writeLines(t, dir, "r.jsonl", []string{
		chat("a", "Why does TestFetch fail?", longAnswer),
		chat("b", "Why does TestFetch fail?", strings.Replace(longAnswer, "slow", "stalled", 1)),
		chat("c", "Something else entirely", "An unrelated answer of some length."),
	}, true)
	out := run(t, decode(t, "max_tokens = 0\nnear_dup = \"tag\"\n"), 1, p)
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(string(out["records"])), "\n") {
		var rec artifacts.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.MetaString("near_dup_cluster"))
	}
	if len(ids) != 3 || ids[0] == "" || ids[0] != ids[1] || ids[2] != "" {
		t.Errorf("near_dup_cluster of the kept records = %q, want the same id on the first two and none on the third", ids)
	}
}

func TestInvalidParams(t *testing.T) {
	for _, src := range []string{
		`near_dup = "maybe"`,
		"near_dup_bands = 30\nnear_dup_rows = 10",
		"near_dup_threshold = 1.5",
		"max_tokens = -1",
	} {
		f, _ := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
		val, diags := hcldec.Decode(f.Body, Definition.Spec, nil)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		if _, diags := Definition.New(val); !diags.HasErrors() {
			t.Errorf("%q: no error", src)
		}
	}
}
