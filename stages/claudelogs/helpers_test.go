package claudelogs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/stages/stagestest"
	"github.com/zclconf/go-cty/cty"
)

// decode decodes an HCL snippet through the stage's own Spec and builds
// the stage, as the engine does.
func decode(t *testing.T, src string) *Stage {
	t.Helper()
	return stagestest.Decode(t, Definition, src).(*Stage)
}

// run runs st over the logs paths and returns its records and report.
func run(t *testing.T, st *Stage, parallelism int, logs ...string) (records, report []byte) {
	t.Helper()
	env := newEnv(t, parallelism, logs...)
	if err := st.Run(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	return readOutputs(t, env)
}

func newEnv(t testing.TB, parallelism int, logs ...string) *stages.Env {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return &stages.Env{
		Stage: "logs", Kind: "claude_logs",
		Inputs:      map[string]stages.Input{"logs": {Name: "logs", Paths: logs}},
		OutDir:      out,
		TempDir:     dir,
		Parallelism: parallelism,
		Logger:      slog.New(slog.DiscardHandler),
		Range:       hcl.Range{Filename: "pipeline.hcl"},
		Summary:     map[string]any{},
	}
}

func readOutputs(t testing.TB, env *stages.Env) (records, report []byte) {
	t.Helper()
	records, err := os.ReadFile(env.OutputPath("records"))
	if err != nil {
		t.Fatal(err)
	}
	report, err = os.ReadFile(env.OutputPath("report"))
	if err != nil {
		t.Fatal(err)
	}
	return records, report
}

// mapOne maps one item and splits its output into report and records.
func mapOne(t *testing.T, st *Stage, item stages.Item) (head, records []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := st.Map(context.Background(), newEnv(t, 1), item, &buf); err != nil {
		t.Fatal(err)
	}
	head, records, _ = bytes.Cut(buf.Bytes(), []byte("\n"))
	return head, records
}

// decodeValue decodes an HCL snippet through Spec.
func decodeValue(src string) (cty.Value, hcl.Diagnostics) {
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), "test.hcl")
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	return hcldec.Decode(f.Body, Definition.Spec, nil)
}

// sessionBuilder writes a session in the real line format for tests: each
// line's parentUuid is the previous line's uuid, and timestamps are
// seconds after a fixed start.
type sessionBuilder struct {
	id, cwd string
	lines   []map[string]any
	last    string
	n       int
}

func newSession(id, cwd string) *sessionBuilder { return &sessionBuilder{id: id, cwd: cwd} }

func (s *sessionBuilder) line(m map[string]any, sec int) string {
	s.n++
	uuid := fmt.Sprintf("%08d-0000-4000-8000-%012d", s.n, s.n)
	base := map[string]any{
		"parentUuid": nil, "isSidechain": false, "userType": "external", "cwd": s.cwd,
		"sessionId": s.id, "version": "2.1.40", "uuid": uuid,
		"timestamp": time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(sec) * time.Second).Format("2006-01-02T15:04:05.000Z"),
	}
	if s.last != "" {
		base["parentUuid"] = s.last
	}
	for k, v := range m {
		base[k] = v
	}
	s.lines = append(s.lines, base)
	s.last = uuid
	return uuid
}

func (s *sessionBuilder) user(text string, sec int) {
	s.line(map[string]any{"type": "user", "message": map[string]any{"role": "user", "content": text}}, sec)
}

func (s *sessionBuilder) userBlocks(sec int, blocks ...map[string]any) {
	s.line(map[string]any{"type": "user", "message": map[string]any{"role": "user", "content": blocks}}, sec)
}

// assistant writes one line per block, sharing message.id and requestId.
func (s *sessionBuilder) assistant(id string, sec int, blocks ...map[string]any) {
	for _, b := range blocks {
		s.line(map[string]any{"type": "assistant", "requestId": "req_" + id, "message": map[string]any{
			"id": id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": []any{b}}}, sec)
	}
}

func (s *sessionBuilder) result(toolID, content string, sec int) {
	s.userBlocks(sec, map[string]any{"type": "tool_result", "tool_use_id": toolID, "content": content})
}

func (s *sessionBuilder) resultRejected(toolID string, sec int) {
	s.line(map[string]any{"type": "user", "toolUseResult": "User rejected tool use", "message": map[string]any{"role": "user", "content": []any{
		map[string]any{"type": "tool_result", "tool_use_id": toolID, "is_error": true,
			"content": "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it was a file edit, the new_string was NOT written to the file). STOP what you are doing and wait for the user to tell you how to proceed."}}}}, sec)
}

// write writes the session under dir/<project>/<id>.jsonl.
func (s *sessionBuilder) write(t *testing.T, dir string) {
	t.Helper()
	var b bytes.Buffer
	for _, l := range s.lines {
		data, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
		b.WriteByte('\n')
	}
	p := filepath.Join(dir, "-home-zed-p", s.id+".jsonl")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func textBlock(s string) map[string]any { return map[string]any{"type": "text", "text": s} }

func toolUse(id, name, input string) map[string]any {
	return map[string]any{"type": "tool_use", "id": id, "name": name, "input": json.RawMessage(input)}
}
