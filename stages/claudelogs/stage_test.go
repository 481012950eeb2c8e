package claudelogs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/stages/secrets"
)

func parseRecords(t *testing.T, data []byte) []*artifacts.Record {
	t.Helper()
	rr := artifacts.NewRecordReader(bytes.NewReader(data), "records")
	var out []*artifacts.Record
	for {
		r, err := rr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}

func parseReport(t *testing.T, data []byte) *Report {
	t.Helper()
	rep := newReport()
	if err := json.Unmarshal(data, rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

func roles(r *artifacts.Record) string {
	var s []string
	for _, m := range r.Messages {
		s = append(s, m.Role)
	}
	return strings.Join(s, ",")
}

func toolNames(r *artifacts.Record) []string {
	var names []string
	for _, tl := range r.Tools {
		var f struct{ Name string }
		json.Unmarshal(tl.Function, &f)
		names = append(names, f.Name)
	}
	return names
}

// checkStructure checks the invariants every record must hold: a system
// message first (with the default prompt), an assistant message last,
// each assistant's tool calls followed by their results in call order
// (except on the last message), tool messages only as such results,
// arguments that are JSON objects, no empty assistant message, and a
// tools list naming exactly the tools called.
func checkStructure(t *testing.T, recs []*artifacts.Record) {
	t.Helper()
	for ri, r := range recs {
		ms := r.Messages
		if len(ms) < 3 || ms[0].Role != "system" || ms[len(ms)-1].Role != "assistant" {
			t.Errorf("record %d: roles %s", ri, roles(r))
			continue
		}
		called := map[string]bool{}
		for i := 0; i < len(ms); i++ {
			m := ms[i]
			switch m.Role {
			case "assistant":
				if m.Content == "" && len(m.ToolCalls) == 0 {
					t.Errorf("record %d message %d: empty assistant message", ri, i)
				}
				for _, c := range m.ToolCalls {
					called[c.Function.Name] = true
					var obj map[string]any
					if err := json.Unmarshal(c.Function.Arguments, &obj); err != nil {
						t.Errorf("record %d: arguments of %s are not an object: %v", ri, c.Function.Name, err)
					}
				}
				if i == len(ms)-1 {
					continue
				}
				for k, c := range m.ToolCalls {
					j := i + 1 + k
					if j >= len(ms) || ms[j].Role != "tool" || ms[j].ToolCallID != c.ID || ms[j].Name != c.Function.Name {
						t.Errorf("record %d message %d: call %d (%s) is not followed by its result", ri, i, k, c.Function.Name)
						break
					}
				}
				i += len(m.ToolCalls)
			case "tool":
				t.Errorf("record %d message %d: tool message that answers no call", ri, i)
			}
		}
		if got, want := toolNames(r), sortedKeys(called); !slices.Equal(got, want) {
			t.Errorf("record %d: tools %v, want %v", ri, got, want)
		}
	}
}

func TestRealTranscripts(t *testing.T) {
	records, report := run(t, decode(t, ``), 2, "testdata/real")
	recs := parseRecords(t, records)
	rep := parseReport(t, report)
	checkStructure(t, recs)

	if rep.Sessions != 4 || rep.Files != 6 || rep.SubagentFiles != 2 || rep.LinesIn != 1725 {
		t.Errorf("sessions %d files %d subagent files %d lines %d, want 4 6 2 1725", rep.Sessions, rep.Files, rep.SubagentFiles, rep.LinesIn)
	}
	// short.jsonl: both calls of the only reply were rejected.
	if rep.DroppedTurns["rejected_tool_call"] != 1 {
		t.Errorf("dropped turns %v, want one rejected_tool_call", rep.DroppedTurns)
	}
	if rep.Dropped["off_branch"] != 0 || rep.Dropped["orphan_tool_result"] != 0 || rep.Dropped["broken_chain"] != 0 {
		t.Errorf("lines lost from the chain: %v", rep.Dropped)
	}
	if len(rep.Malformed) != 0 {
		t.Errorf("malformed %v in real transcripts", rep.Malformed)
	}
	var compacted, sub int
	for _, r := range recs {
		if r.MetaString("source") != "claude_logs" || r.MetaString("group") != r.MetaString("session") || r.MetaString("group") == "" {
			t.Errorf("meta %v", r.Meta)
		}
		for _, m := range r.Messages {
			for _, bad := range []string{"\x1b", "<system-reminder>", "<local-command", "<command-name>",
				"The user wants me to research why scrolling", // a thinking block of tool_heavy.jsonl
				"[Request interrupted"} {
				if strings.Contains(m.Content, bad) {
					t.Errorf("%s message holds %q", m.Role, bad)
				}
			}
			if m.Role == "assistant" && (strings.Contains(m.Content, "This session is being continued") || strings.Contains(m.Content, "<analysis>")) {
				t.Errorf("a compaction summary is an assistant target")
			}
		}
		if r.Meta["after_compaction"] == true {
			compacted++
			if !strings.HasPrefix(r.Messages[1].Content, "This session is being continued") {
				t.Errorf("the compacted segment does not start with the summary: %.80q", r.Messages[1].Content)
			}
		}
		if r.MetaString("agent") != "" {
			sub++
			if r.MetaString("agent") != "a2898e3" || r.MetaString("session") != "4d5611e5-241a-462a-8d15-5122611a9569" {
				t.Errorf("sub-agent meta %v", r.Meta)
			}
		}
	}
	if compacted != 1 || sub != 1 {
		t.Errorf("%d records after compaction and %d sub-agent records, want 1 and 1", compacted, sub)
	}
	// tool_heavy.jsonl: the Glob call sits on a side branch (a sibling of
	// the WebSearch call); it must come back with its result.
	found := false
	for _, r := range recs {
		for i, m := range r.Messages {
			if len(m.ToolCalls) == 2 && m.ToolCalls[0].Function.Name == "WebSearch" && m.ToolCalls[1].Function.Name == "Glob" {
				found = r.Messages[i+2].Content == "/home/user/projects/spotter/assets/js/app.js"
			}
		}
	}
	if !found {
		t.Error("the parallel WebSearch+Glob reply of tool_heavy.jsonl was not rebuilt with both results")
	}
}

func TestLayoutV1InlineSidechain(t *testing.T) {
	records, report := run(t, decode(t, ``), 1, "testdata/v1")
	recs := parseRecords(t, records)
	checkStructure(t, recs)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	main0, main1, side := recs[0], recs[1], recs[2]
	if got, want := roles(main0), "system,user,assistant,tool,assistant,tool,assistant,tool,assistant"; got != want {
		t.Errorf("turn 0 roles %s, want %s", got, want)
	}
	if main0.Messages[0].Content != DefaultSystemPrompt {
		t.Errorf("system prompt %q", main0.Messages[0].Content)
	}
	if c := main0.Messages[3].Content; strings.Contains(c, "\x1b") || !strings.Contains(c, "panic: runtime error: integer divide by zero\ncalc/calc.go:14") {
		t.Errorf("Bash result not cleaned: %q", c)
	}
	// The reply written twice is merged once, with its tool call.
	if m := main0.Messages[6]; strings.Count(m.Content, "does not guard") != 1 || len(m.ToolCalls) != 1 || m.ToolCalls[0].Function.Name != "Edit" {
		t.Errorf("merged reply: %+v", m)
	}
	if got := toolNames(main0); !slices.Equal(got, []string{"Bash", "Edit", "Task"}) {
		t.Errorf("tools %v", got)
	}
	if got := string(main0.Messages[2].ToolCalls[0].Function.Arguments); got != `{"command":"go test ./calc/...","description":"Run calc tests"}` {
		t.Errorf("arguments %s", got)
	}
	// Turn 1 carries turn 0 as context, its assistant messages out of the loss.
	if main1.Meta["context_messages"] != float64(8) {
		t.Fatalf("turn 1 context %v, want 8 messages", main1.Meta["context_messages"])
	}
	for i, m := range main1.Messages[1:] {
		ctx := i < 8
		if m.Role == "assistant" && (m.Weight != nil) != ctx {
			t.Errorf("turn 1 message %d: weight %v, context %v", i+1, m.Weight, ctx)
		}
		if m.Weight != nil && *m.Weight != 0 {
			t.Errorf("context weight %v", *m.Weight)
		}
	}
	if main1.Messages[9].Content != "thanks! also add a test for the zero case" {
		t.Errorf("turn 1 prompt %q", main1.Messages[9].Content)
	}
	if side.MetaString("agent") != "sidechain-s1-0001" || side.MetaString("group") != "5b0c7e2a-91d4-4c1e-8f3a-2d6b9e0a4c71" || roles(side) != "system,user,assistant,tool,assistant" {
		t.Errorf("sidechain record: %s %v", roles(side), side.Meta)
	}
	if main0.MetaString("project") != "calc" || main0.MetaString("version") != "1.0.43" {
		t.Errorf("meta %v", main0.Meta)
	}
	// Home paths are redacted by default.
	if strings.Contains(string(records), "/home/alice") {
		t.Error("the home path /home/alice is still in the records")
	}
	if rep := parseReport(t, report); rep.Redactions["home_path"] == 0 || rep.Dropped["block:thinking"] != 1 {
		t.Errorf("report %+v", rep)
	}

	// Without sub-agents the inline chain is left out.
	records, report = run(t, decode(t, `subagents = false`), 1, "testdata/v1")
	if n := len(parseRecords(t, records)); n != 2 {
		t.Errorf("subagents = false: %d records, want 2", n)
	}
	if rep := parseReport(t, report); rep.Dropped["subagent_conversation"] != 1 {
		t.Errorf("dropped %v", rep.Dropped)
	}
}

func TestLayoutV2AgentFiles(t *testing.T) {
	st := decode(t, `redact_home_paths = false`)
	env := newEnv(t, 1, "testdata/v2")
	items, err := st.Items(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Key != "-home-bob-work-api/c3f1a9d0-7b2e-4f65-a8c4-0e9d2b7f1a36.jsonl" || len(items[0].Files) != 2 || filepath.Base(items[0].Files[1]) != "agent-7f3a9c21.jsonl" {
		t.Fatalf("items %+v", items)
	}
	records, report := run(t, st, 1, "testdata/v2")
	recs := parseRecords(t, records)
	checkStructure(t, recs)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	// The rewound first attempt is gone; the edited message is the prompt.
	if p := recs[0].Messages[1].Content; p != "Why does GET /users/{id} return 500 for unknown ids?" {
		t.Errorf("prompt %q", p)
	}
	if p := recs[1].Messages[len(recs[1].Messages)-4].Content; p != "try again" {
		t.Errorf("turn after the API error: %q", p)
	}
	if last := recs[1].Messages[len(recs[1].Messages)-1].Content; last != "Unknown ids now get a 404." {
		t.Errorf("last message %q (the synthetic message must be dropped)", last)
	}
	if a := recs[2]; a.MetaString("agent") != "7f3a9c21" || a.MetaString("group") != "c3f1a9d0-7b2e-4f65-a8c4-0e9d2b7f1a36" || roles(a) != "system,user,assistant,tool,assistant,tool,assistant" {
		t.Errorf("agent record %s %v", roles(a), a.Meta)
	}
	if !strings.Contains(string(records), "/home/bob/work/api") {
		t.Error("redact_home_paths = false still redacted")
	}
	rep := parseReport(t, report)
	if rep.Dropped["off_branch"] != 3 || rep.Dropped["api_error"] != 1 || rep.Dropped["synthetic"] != 1 || rep.DroppedTurns["api_error"] != 1 {
		t.Errorf("dropped %v, turns %v", rep.Dropped, rep.DroppedTurns)
	}
}

func TestLayoutV21Items(t *testing.T) {
	st := decode(t, ``)
	env := newEnv(t, 1, "testdata/v21")
	items, err := st.Items(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		var fs []string
		for _, f := range it.Files {
			rel, _ := filepath.Rel(filepath.Join(must(filepath.Abs("testdata/v21"))), f)
			fs = append(fs, filepath.ToSlash(rel))
		}
		got = append(got, it.Key+" "+strings.Join(fs, " "))
	}
	want := []string{
		"-home-erin-proj-web/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d.jsonl -home-erin-proj-web/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d/subagents/agent-a0rphan.jsonl",
		"-home-erin-proj-web/e8d2c4b6-1a3f-4e5d-9c7b-8a6f4e2d0c13.jsonl -home-erin-proj-web/e8d2c4b6-1a3f-4e5d-9c7b-8a6f4e2d0c13.jsonl -home-erin-proj-web/e8d2c4b6-1a3f-4e5d-9c7b-8a6f4e2d0c13/subagents/agent-a51c0de.jsonl -home-erin-proj-web/e8d2c4b6-1a3f-4e5d-9c7b-8a6f4e2d0c13/subagents/agent-acompact-77e0aa.jsonl",
	}
	if !slices.Equal(got, want) {
		t.Errorf("items\n got %q\nwant %q", got, want)
	}
	records, report := run(t, st, 1, "testdata/v21")
	recs := parseRecords(t, records)
	checkStructure(t, recs)
	var agents []string
	for _, r := range recs {
		agents = append(agents, r.MetaString("agent")+"@"+r.MetaString("group")[:8])
	}
	if want := []string{"a0rphan@0a1b2c3d", "@e8d2c4b6", "a51c0de@e8d2c4b6"}; !slices.Equal(agents, want) {
		t.Errorf("records %v, want %v", agents, want)
	}
	if strings.Contains(string(records), "<analysis>") {
		t.Error("the compaction agent's summary became a record")
	}
	if rep := parseReport(t, report); rep.Dropped["compaction_agent"] != 2 {
		t.Errorf("dropped %v", rep.Dropped)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestBadInput(t *testing.T) {
	records, report := run(t, decode(t, `report_examples = 4`), 1, "testdata/bad")
	recs := parseRecords(t, records)
	checkStructure(t, recs)
	if len(recs) != 1 || roles(recs[0]) != "system,user,assistant,tool,assistant" {
		t.Fatalf("records %d", len(recs))
	}
	if m := recs[0].Messages[2]; m.Content != "It prints `hello, world`." || len(m.ToolCalls) != 1 {
		t.Errorf("reply with an unknown block: %+v", m)
	}
	rep := parseReport(t, report)
	want := map[string]int{"invalid_json": 2, "invalid_record": 2, "unknown_type": 2, "unknown_block": 1, "invalid_content": 1, "truncated_last_line": 1}
	for k, n := range want {
		if rep.Malformed[k] != n {
			t.Errorf("malformed[%s] = %d, want %d (all: %v)", k, rep.Malformed[k], n, rep.Malformed)
		}
	}
	if len(rep.MalformedExamples) != 4 {
		t.Errorf("%d examples, want report_examples = 4", len(rep.MalformedExamples))
	}
	p := rep.MalformedExamples[3]
	if p.File != "-home-carol-x/9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a.jsonl" || p.Line != 2 || p.Kind != "invalid_json" {
		t.Errorf("example %+v", p)
	}
	if rep.Sessions != 3 || rep.LinesIn != 12 {
		t.Errorf("sessions %d lines %d", rep.Sessions, rep.LinesIn)
	}
}

func TestModes(t *testing.T) {
	records, _ := run(t, decode(t, `mode = "pair"`), 1, "testdata/v1")
	recs := parseRecords(t, records)
	if len(recs) != 5 {
		t.Fatalf("pair mode: %d records, want 5", len(recs))
	}
	for _, r := range recs {
		if roles(r) != "system,user,assistant" || len(r.Messages[2].ToolCalls) != 0 || r.Tools != nil {
			t.Errorf("pair record %s", roles(r))
		}
	}
	if u := recs[1].Messages[1].Content; !strings.HasPrefix(u, "[TOOL RESULT] --- FAIL: TestDivide") || !strings.Contains(u, "\n\n[TOOL RESULT] Divide is defined") {
		t.Errorf("second pair's user text %q", u)
	}

	// follow: a session whose reply arrives after the window.
	dir := t.TempDir()
	sb := newSession("7d7d7d7d-0000-4000-8000-000000000001", "/home/zed/p")
	sb.user("Why is the build slow?", 0)
	sb.assistant("msg_f1", 30, textBlock("Let me time it."), toolUse("toolu_f1", "Bash", `{"command":"time make"}`))
	sb.result("toolu_f1", "real 4m12s", 290)
	sb.assistant("msg_f2", 300, textBlock("The build takes 4 minutes because of the vendored C code."))
	sb.user("thanks", 400)
	sb.assistant("msg_f3", 410, textBlock("You're welcome."))
	sb.write(t, dir)
	records, report := run(t, decode(t, `mode = "follow"`), 1, dir)
	recs = parseRecords(t, records)
	checkStructure(t, recs)
	if len(recs) != 2 || roles(recs[0]) != "system,user,assistant" || len(recs[0].Messages[2].ToolCalls) != 1 {
		t.Errorf("follow records: %d, first %s", len(recs), roles(recs[0]))
	}
	records, _ = run(t, decode(t, `mode = "follow"`+"\n"+`follow_minutes = 10`), 1, dir)
	if recs = parseRecords(t, records); roles(recs[0]) != "system,user,assistant,tool,assistant" {
		t.Errorf("follow 10 minutes: %s", roles(recs[0]))
	}
	_ = report
	// turn mode with context_turns = 0: no context.
	records, _ = run(t, decode(t, `context_turns = 0`), 1, dir)
	if recs = parseRecords(t, records); recs[1].Meta["context_messages"] != float64(0) || roles(recs[1]) != "system,user,assistant" {
		t.Errorf("context_turns = 0: %s %v", roles(recs[1]), recs[1].Meta)
	}
	records, _ = run(t, decode(t, ``), 1, dir)
	if recs = parseRecords(t, records); recs[1].Meta["context_messages"] != float64(4) {
		t.Errorf("context %v", recs[1].Meta["context_messages"])
	}
}

func TestNoiseAndCuts(t *testing.T) {
	dir := t.TempDir()
	sb := newSession("7d7d7d7d-0000-4000-8000-000000000002", "/home/zed/p")
	sb.line(map[string]any{"type": "user", "isMeta": true, "message": map[string]any{"role": "user", "content": "<local-command-caveat>Caveat: ...</local-command-caveat>"}}, 0)
	sb.user("<command-name>/clear</command-name>\n<command-message>clear</command-message>\n<command-args></command-args>", 1)
	sb.user("<local-command-stdout>\x1b[2mCleared\x1b[22m</local-command-stdout>", 2)
	sb.userBlocks(3, textBlock("Look at this screenshot <system-reminder>hidden</system-reminder>"), map[string]any{"type": "image", "source": map[string]any{"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
	sb.assistant("msg_n1", 4, map[string]any{"type": "thinking", "thinking": "secret plan", "signature": "x"}, textBlock("\x1b[1mI see\x1b[0m a stack trace."), toolUse("toolu_n1", "Read", `{"file_path":"/home/zed/p/big.log"}`))
	sb.result("toolu_n1", strings.Repeat("0123456789", 1000)+"<system-reminder>Whenever you read a file...</system-reminder>", 5)
	sb.assistant("msg_n2", 6, toolUse("toolu_n2", "Bash", `{"command":"rm -rf build"}`))
	sb.resultRejected("toolu_n2", 7)
	sb.user("[Request interrupted by user for tool use]", 8)
	sb.user("no, keep the build folder; what is in the log?", 9)
	sb.assistant("msg_n3", 10, textBlock("The log shows a timeout."))
	sb.user("and now?", 11)
	sb.assistant("msg_n4", 12, toolUse("toolu_n4", "Grep", `{"pattern":"timeout"}`))
	sb.result("toolu_n4", "big.log:3: timeout", 13)
	sb.user("[Request interrupted by user]", 14)
	sb.write(t, dir)

	records, report := run(t, decode(t, `max_tool_output = 600`+"\n"+`context_turns = 1`), 1, dir)
	recs := parseRecords(t, records)
	checkStructure(t, recs)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	// Turn 0: the rejected call's reply and what followed are cut, then
	// the trailing Read result, so the example ends on the Read call.
	r := recs[0]
	if roles(r) != "system,user,assistant" {
		t.Errorf("turn 0 roles %s", roles(r))
	}
	if got := r.Messages[1].Content; got != "Look at this screenshot \n\n[image omitted]" {
		t.Errorf("prompt %q", got)
	}
	if got := r.Messages[2].Content; got != "I see a stack trace." || r.Messages[2].ToolCalls[0].Function.Name != "Read" {
		t.Errorf("assistant %q", got)
	}
	// Turn 1 has turn 0 as context, with the Read result the model saw.
	if roles(recs[1]) != "system,user,assistant,tool,user,assistant" {
		t.Fatalf("turn 1 roles %s", roles(recs[1]))
	}
	out := recs[1].Messages[3].Content
	if !strings.Contains(out, "\n[... 9400 characters truncated ...]\n") || strings.Contains(out, "system-reminder") || len([]rune(out)) > 700 {
		t.Errorf("tool output not truncated/cleaned: %d chars", len(out))
	}
	if last := recs[2]; roles(last) != "system,user,assistant,user,assistant" || last.Messages[4].ToolCalls[0].Function.Name != "Grep" {
		t.Errorf("interrupted turn: %s", roles(last))
	}
	rep := parseReport(t, report)
	for _, k := range []string{"meta", "slash_command", "local_command_output", "block:thinking", "block:system_reminder", "rejected_call"} {
		if rep.Dropped[k] == 0 {
			t.Errorf("dropped[%s] = 0 (%v)", k, rep.Dropped)
		}
	}
	if rep.OmittedImages != 1 || rep.TruncatedToolOutputs != 1 {
		t.Errorf("images %d truncated %d", rep.OmittedImages, rep.TruncatedToolOutputs)
	}
	if strings.Contains(string(records), "secret plan") {
		t.Error("thinking leaked")
	}
}

// Fake credentials, assembled at run time.
var (
	fakeGitHub    = "ghp" + "_" + strings.Repeat("k3Jd9", 8)
	fakeAnthropic = "sk-ant-" + "api03-" + strings.Repeat("Qz8_w", 18)
	fakeAWS       = "AKIA" + "J7QW3ERT5YU2IO8P"
	fakeJWT       = "eyJ" + "hbGciOiJIUzI1NiJ9" + ".eyJ" + "zdWIiOiJhbGljZSJ9" + "." + "cBr7Zk3pQ0vXy9LmN2sT4uW6"
)

func TestRedactionInStage(t *testing.T) {
	dir := t.TempDir()
	sb := newSession("7d7d7d7d-0000-4000-8000-000000000003", "/home/zed/p")
	sb.user("deploy with token "+fakeGitHub+" and mail ops@acme.io", 0)
	sb.assistant("msg_s1", 5, textBlock("I'll export the key."), toolUse("toolu_s1", "Bash", `{"command":"export ANTHROPIC_API_KEY=`+fakeAnthropic+` && env | grep AWS"}`))
	sb.result("toolu_s1", "AWS_ACCESS_KEY_ID="+fakeAWS+"\nDATABASE_URL=postgres://app:Sup3rS3cret!@db:5432/app\nSESSION="+fakeJWT+"\nPASSWORD_MIN_LENGTH=12", 6)
	sb.assistant("msg_s2", 7, textBlock("Done; the database password is in DATABASE_URL and token := lexer.Next() is unrelated."))
	sb.write(t, dir)

	for _, emails := range []bool{false, true} {
		hcl := ""
		if emails {
			hcl = "redact_emails = true"
		}
		records, report := run(t, decode(t, hcl), 1, dir)
		for _, s := range []string{fakeGitHub, fakeAnthropic, fakeAWS, fakeJWT, "Sup3rS3cret!"} {
			if bytes.Contains(records, []byte(s)) {
				t.Errorf("a secret of %d characters is in the records", len(s))
			}
		}
		if fs := secrets.Scan(string(records)); len(fs) != 0 {
			t.Errorf("the quality gate still finds %d secrets", len(fs))
		}
		for _, keep := range []string{"PASSWORD_MIN_LENGTH=12", "token := lexer.Next()", "env | grep AWS"} {
			if !bytes.Contains(records, []byte(keep)) {
				t.Errorf("%q was redacted", keep)
			}
		}
		if got := bytes.Contains(records, []byte("ops@acme.io")); got == emails {
			t.Errorf("redact_emails = %v: e-mail present = %v", emails, got)
		}
		rep := parseReport(t, report)
		want := map[string]int{"github_token": 1, "anthropic_key": 1, "aws_access_key": 1, "url_password": 1, "jwt": 1, "home_path": 0}
		if emails {
			want["email"] = 1
		}
		for k, n := range want {
			if k != "home_path" && rep.Redactions[k] != n {
				t.Errorf("redactions[%s] = %d, want %d (%v)", k, rep.Redactions[k], n, rep.Redactions)
			}
		}
		if bytes.Contains(report, []byte(fakeGitHub)) {
			t.Error("the report holds a secret")
		}
	}
}

// TestDeterminism runs the stage on the same sessions laid out under two
// different roots, listed in different orders (folders, or every file in
// reverse), with parallelism 1 and 4: the outputs must be identical.
func TestDeterminism(t *testing.T) {
	var srcs []string
	for _, d := range []string{"testdata/real", "testdata/v1", "testdata/v2", "testdata/v21", "testdata/bad"} {
		srcs = append(srcs, d)
	}
	a, b := t.TempDir(), filepath.Join(t.TempDir(), "elsewhere", "projects")
	for _, src := range srcs {
		copyTree(t, src, filepath.Join(a, filepath.Base(src)))
		copyTree(t, src, filepath.Join(b, filepath.Base(src)))
	}
	files, err := listFiles(t.Context(), []string{b})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(files)
	st := decode(t, ``)
	recA, repA := run(t, st, 1, a)
	recB, repB := run(t, st, 4, files...)
	if !bytes.Equal(recA, recB) || !bytes.Equal(repA, repB) {
		t.Errorf("outputs differ between runs (records %d/%d bytes, report %d/%d bytes)", len(recA), len(recB), len(repA), len(repB))
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, src := range []string{`mode = "chat"`, `follow_minutes = 0`, `max_tool_output = 10`, `context_turns = -1`} {
		v, diags := decodeValue(src)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", src, diags)
		}
		if _, diags := Definition.New(v); !diags.HasErrors() {
			t.Errorf("%s: no error", src)
		}
	}
	if _, diags := decodeValue(`mode = 3` + "\n" + `bogus = 1`); !diags.HasErrors() {
		t.Error("an unknown argument decoded")
	}
}

// TestExamples converts the demo sessions of examples/claude_logs, which
// the default pipeline uses, and checks that they stay well-formed.
func TestExamples(t *testing.T) {
	records, report := run(t, decode(t, ``), 2, "../../examples/claude_logs")
	recs := parseRecords(t, records)
	checkStructure(t, recs)
	rep := parseReport(t, report)
	if len(recs) != 12 || rep.Sessions != 7 || rep.SubagentConversations != 1 || len(rep.Malformed) != 0 || len(rep.DroppedTurns) != 0 {
		t.Errorf("%d records from %d sessions (%d sub-agents), malformed %v, dropped turns %v", len(recs), rep.Sessions, rep.SubagentConversations, rep.Malformed, rep.DroppedTurns)
	}
	if rep.Dropped["rejected_call"] != 1 || rep.Dropped["slash_command"] != 1 {
		t.Errorf("dropped %v", rep.Dropped)
	}
}

func TestWarmupAgentDropped(t *testing.T) {
	dir := t.TempDir()
	const id = "7d7d7d7d-0000-4000-8000-000000000004"
	sb := newSession(id, "/home/zed/p")
	sb.user("What does make do here?", 0)
	sb.assistant("msg_w1", 3, textBlock("It builds the binary into ./bin."))
	sb.write(t, dir)
	ag := newSession(id, "/home/zed/p")
	ag.line(map[string]any{"type": "user", "isSidechain": true, "agentId": "w1", "message": map[string]any{"role": "user", "content": "Warmup"}}, 0)
	ag.line(map[string]any{"type": "assistant", "isSidechain": true, "agentId": "w1", "requestId": "req_w", "message": map[string]any{
		"id": "msg_w2", "role": "assistant", "model": "claude-haiku-4-5", "content": []any{textBlock("I'm ready to help.")}}}, 1)
	var b bytes.Buffer
	for _, l := range ag.lines {
		data, _ := json.Marshal(l)
		b.Write(append(data, '\n'))
	}
	if err := os.WriteFile(filepath.Join(dir, "-home-zed-p", "agent-w1.jsonl"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	records, report := run(t, decode(t, ``), 1, dir)
	if n := len(parseRecords(t, records)); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
	if rep := parseReport(t, report); rep.Dropped["warmup_agent"] != 1 || rep.SubagentFiles != 1 {
		t.Errorf("dropped %v, sub-agent files %d", rep.Dropped, rep.SubagentFiles)
	}
}

// TestMaxCharsSplitsLongLoops splits the long autonomous turns of the real
// 2.1.39 session: every part fits (or is a single step), parts are
// well-formed, and together they train on each assistant message of the
// turn exactly once.
func TestMaxCharsSplitsLongLoops(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, "testdata/real/marot_spotter", filepath.Join(dir, "p"))
	whole, _ := run(t, decode(t, ``), 1, dir)
	split, _ := run(t, decode(t, `max_chars = 12000`), 1, dir)
	wholeRecs, splitRecs := parseRecords(t, whole), parseRecords(t, split)
	checkStructure(t, splitRecs)
	if len(splitRecs) <= len(wholeRecs) {
		t.Fatalf("%d records split, %d whole", len(splitRecs), len(wholeRecs))
	}
	key := func(r *artifacts.Record) string {
		return fmt.Sprint(r.MetaString("session"), r.MetaString("agent"), r.Meta["turn"])
	}
	targets := func(r *artifacts.Record) (n int) {
		for _, m := range r.Messages {
			if m.Role == "assistant" && m.Weight == nil {
				n++
			}
		}
		return n
	}
	want, got := map[string]int{}, map[string]int{}
	for _, r := range wholeRecs {
		want[key(r)] += targets(r)
	}
	for _, r := range splitRecs {
		got[key(r)] += targets(r)
		ctx := int(r.Meta["context_messages"].(float64))
		chars, steps := 0, 0
		for _, m := range r.Messages[1+ctx+1:] {
			chars += messageChars(m)
			if m.Role == "assistant" {
				steps++
			}
		}
		if chars > 12000 && steps > 1 {
			t.Errorf("part %v of %s: %d characters in %d steps", r.Meta["part"], key(r), chars, steps)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("trained assistant messages per turn: split %v, whole %v", got, want)
	}
}

// TestRejectionTextInOutput: a successful tool result that merely contains
// the rejection sentence (the model read a transcript) does not cut.
func TestRejectionTextInOutput(t *testing.T) {
	dir := t.TempDir()
	sb := newSession("7d7d7d7d-0000-4000-8000-000000000005", "/home/zed/p")
	sb.user("what did the last session say?", 0)
	sb.assistant("msg_r1", 2, toolUse("toolu_r1", "Bash", `{"command":"tail -1 notes.txt"}`))
	sb.result("toolu_r1", "The user doesn't want to proceed with this tool use. (quoted from a log)", 3)
	sb.assistant("msg_r2", 4, textBlock("It quotes a rejected tool call."))
	sb.write(t, dir)
	records, report := run(t, decode(t, ``), 1, dir)
	recs := parseRecords(t, records)
	if len(recs) != 1 || roles(recs[0]) != "system,user,assistant,tool,assistant" {
		t.Errorf("records %d: %s (report %s)", len(recs), roles(recs[0]), report)
	}
}
