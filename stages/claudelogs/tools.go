package claudelogs

import (
	"bytes"
	"encoding/json"

	"github.com/pipeml/pipe/artifacts"
)

// param is one parameter of a tool signature.
type param struct {
	name, typ string
	required  bool
}

// toolSig is a tool signature as offered to the model.
type toolSig struct {
	desc   string
	params []param
}

// builtinTools are short signatures of Claude Code's built-in tools,
// written for this project from the arguments the tools take in
// transcripts. Parameters seen in a call but missing here (other
// versions, MCP tools) are added with the type of the value seen.
var builtinTools = map[string]toolSig{
	"Bash": {"Run a shell command and return its output.", []param{
		{"command", "string", true}, {"description", "string", false}, {"timeout", "number", false}, {"run_in_background", "boolean", false}}},
	"BashOutput": {"Read new output of a background shell.", []param{{"bash_id", "string", true}, {"filter", "string", false}}},
	"KillShell":  {"Stop a background shell.", []param{{"shell_id", "string", true}}},
	"Read": {"Read a file, with line numbers.", []param{
		{"file_path", "string", true}, {"offset", "number", false}, {"limit", "number", false}}},
	"Write": {"Write a file, replacing its content.", []param{{"file_path", "string", true}, {"content", "string", true}}},
	"Edit": {"Replace an exact string in a file.", []param{
		{"file_path", "string", true}, {"old_string", "string", true}, {"new_string", "string", true}, {"replace_all", "boolean", false}}},
	"MultiEdit": {"Apply several exact-string replacements to one file.", []param{{"file_path", "string", true}, {"edits", "array", true}}},
	"Glob":      {"Find files by glob pattern.", []param{{"pattern", "string", true}, {"path", "string", false}}},
	"Grep": {"Search file contents with a regular expression (ripgrep).", []param{
		{"pattern", "string", true}, {"path", "string", false}, {"glob", "string", false}, {"type", "string", false},
		{"output_mode", "string", false}, {"-i", "boolean", false}, {"-n", "boolean", false},
		{"-A", "number", false}, {"-B", "number", false}, {"-C", "number", false},
		{"multiline", "boolean", false}, {"head_limit", "number", false}}},
	"LS":           {"List a directory.", []param{{"path", "string", true}, {"ignore", "array", false}}},
	"Task":         {"Start a sub-agent on a task and return its final report.", []param{{"description", "string", true}, {"prompt", "string", true}, {"subagent_type", "string", true}}},
	"TodoWrite":    {"Replace the task list.", []param{{"todos", "array", true}}},
	"WebFetch":     {"Fetch a URL and answer a prompt about its content.", []param{{"url", "string", true}, {"prompt", "string", true}}},
	"WebSearch":    {"Search the web.", []param{{"query", "string", true}, {"allowed_domains", "array", false}, {"blocked_domains", "array", false}}},
	"NotebookEdit": {"Edit a Jupyter notebook cell.", []param{{"notebook_path", "string", true}, {"new_source", "string", true}, {"cell_id", "string", false}, {"cell_type", "string", false}, {"edit_mode", "string", false}}},
	"ExitPlanMode": {"Present a plan and leave plan mode.", []param{{"plan", "string", true}}},
}

// jsonType names the JSON Schema type of a raw value.
func jsonType(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "string"
	}
	switch v[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// toolsOf returns the signatures of the tools called in msgs, by name.
func toolsOf(msgs []artifacts.Message) []artifacts.Tool {
	seen := map[string]map[string]string{} // tool -> param -> type
	for _, m := range msgs {
		for _, c := range m.ToolCalls {
			ps := seen[c.Function.Name]
			if ps == nil {
				ps = map[string]string{}
				seen[c.Function.Name] = ps
			}
			var args map[string]json.RawMessage
			if json.Unmarshal(c.Function.Arguments, &args) == nil {
				for k, v := range args {
					if _, ok := ps[k]; !ok {
						ps[k] = jsonType(v)
					}
				}
			}
		}
	}
	names := sortedKeys(seen)
	tools := make([]artifacts.Tool, 0, len(names))
	for _, name := range names {
		sig := builtinTools[name]
		params := append([]param(nil), sig.params...)
		known := map[string]bool{}
		for _, p := range params {
			known[p.name] = true
		}
		for _, k := range sortedKeys(seen[name]) {
			if !known[k] {
				params = append(params, param{k, seen[name][k], false})
			}
		}
		tools = append(tools, artifacts.Tool{Type: "function", Function: signatureJSON(name, sig.desc, params)})
	}
	return tools
}

// signatureJSON writes {"name","description","parameters"} with keys in
// that order, so the chat template renders it the same way every time.
func signatureJSON(name, desc string, params []param) json.RawMessage {
	var b bytes.Buffer
	str := func(s string) {
		enc, _ := marshalNoEscape(s)
		b.Write(enc)
	}
	b.WriteString(`{"name":`)
	str(name)
	b.WriteString(`,"description":`)
	str(desc)
	b.WriteString(`,"parameters":{"type":"object","properties":{`)
	var required []string
	for i, p := range params {
		if i > 0 {
			b.WriteByte(',')
		}
		str(p.name)
		b.WriteString(`:{"type":`)
		str(p.typ)
		b.WriteByte('}')
		if p.required {
			required = append(required, p.name)
		}
	}
	b.WriteString(`},"required":[`)
	for i, r := range required {
		if i > 0 {
			b.WriteByte(',')
		}
		str(r)
	}
	b.WriteString(`]}}`)
	return b.Bytes()
}
