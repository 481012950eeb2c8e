package claudelogs

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/pipeml/pipe/stages"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
)

// DefaultSystemPrompt is the original pipeline's system prompt.
const DefaultSystemPrompt = "You are a precise coding assistant that diagnoses errors step-by-step, references file paths/lines when useful, and proposes concrete fixes."

// Modes of turning a conversation into examples.
const (
	ModeTurn   = "turn"
	ModePair   = "pair"
	ModeFollow = "follow"
)

// Config is the decoded parameters of a claude_logs stage.
type Config struct {
	Mode            string `cty:"mode"`
	SystemPrompt    string `cty:"system_prompt"`
	Subagents       bool   `cty:"subagents"`
	ContextTurns    int    `cty:"context_turns"`
	ContextChars    int    `cty:"context_chars"`
	MaxChars        int    `cty:"max_chars"`
	FollowMinutes   int    `cty:"follow_minutes"`
	MaxToolOutput   int    `cty:"max_tool_output"`
	RedactEmails    bool   `cty:"redact_emails"`
	RedactHomePaths bool   `cty:"redact_home_paths"`
	ReportExamples  int    `cty:"report_examples"`
}

// DefaultConfig returns the parameters' defaults.
func DefaultConfig() Config {
	return Config{
		Mode:            ModeTurn,
		SystemPrompt:    DefaultSystemPrompt,
		Subagents:       true,
		ContextTurns:    2,
		ContextChars:    8000,
		MaxChars:        0,
		FollowMinutes:   3,
		MaxToolOutput:   6000,
		RedactEmails:    false,
		RedactHomePaths: true,
		ReportExamples:  20,
	}
}

func withDefault(name string, t cty.Type, def cty.Value) hcldec.Spec {
	return &hcldec.DefaultSpec{
		Primary: &hcldec.AttrSpec{Name: name, Type: t},
		Default: &hcldec.LiteralSpec{Value: def},
	}
}

// Spec is the schema of the stage's parameters.
var Spec = func() hcldec.ObjectSpec {
	d := DefaultConfig()
	return hcldec.ObjectSpec{
		"mode":              withDefault("mode", cty.String, cty.StringVal(d.Mode)),
		"system_prompt":     withDefault("system_prompt", cty.String, cty.StringVal(d.SystemPrompt)),
		"subagents":         withDefault("subagents", cty.Bool, cty.BoolVal(d.Subagents)),
		"context_turns":     withDefault("context_turns", cty.Number, cty.NumberIntVal(int64(d.ContextTurns))),
		"context_chars":     withDefault("context_chars", cty.Number, cty.NumberIntVal(int64(d.ContextChars))),
		"max_chars":         withDefault("max_chars", cty.Number, cty.NumberIntVal(int64(d.MaxChars))),
		"follow_minutes":    withDefault("follow_minutes", cty.Number, cty.NumberIntVal(int64(d.FollowMinutes))),
		"max_tool_output":   withDefault("max_tool_output", cty.Number, cty.NumberIntVal(int64(d.MaxToolOutput))),
		"redact_emails":     withDefault("redact_emails", cty.Bool, cty.BoolVal(d.RedactEmails)),
		"redact_home_paths": withDefault("redact_home_paths", cty.Bool, cty.BoolVal(d.RedactHomePaths)),
		"report_examples":   withDefault("report_examples", cty.Number, cty.NumberIntVal(int64(d.ReportExamples))),
	}
}()

// Definition is the claude_logs stage kind.
var Definition = &stages.Definition{
	Name:    "claude_logs",
	Doc:     doc,
	Version: "1",
	Spec:    Spec,
	Inputs: []stages.InputSpec{{
		Name:     "logs",
		Doc:      "Claude Code transcript folders, files or globs, such as ~/.claude/projects.",
		Required: true,
		List:     true,
	}},
	Outputs: []stages.OutputSpec{
		{Name: "records", Doc: "Chat SFT records, one JSON object a line (artifacts.Record).", Kind: stages.File},
		{Name: "report", Doc: "Counts: lines in, records out, dropped by reason, redactions by kind, malformed lines.", Kind: stages.File},
	},
	New: func(cfg cty.Value) (stages.Stage, hcl.Diagnostics) {
		c, diags := DecodeConfig(cfg)
		if diags.HasErrors() {
			return nil, diags
		}
		return New(c), nil
	},
}

// DecodeConfig converts a value conforming to Spec into a Config and
// checks it.
func DecodeConfig(v cty.Value) (Config, hcl.Diagnostics) {
	var c Config
	if err := gocty.FromCtyValue(v, &c); err != nil {
		return c, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid claude_logs parameters",
			Detail:   fmt.Sprintf("The parameters could not be read: %v.", err),
		}}
	}
	var diags hcl.Diagnostics
	bad := func(name, detail string) {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid value for " + name,
			Detail:   detail,
		})
	}
	switch c.Mode {
	case ModeTurn, ModePair, ModeFollow:
	default:
		bad("mode", fmt.Sprintf("The mode %q is not known; use \"turn\", \"pair\" or \"follow\".", c.Mode))
	}
	if c.ContextTurns < 0 {
		bad("context_turns", "context_turns must be 0 or more.")
	}
	if c.ContextChars < 0 {
		bad("context_chars", "context_chars must be 0 or more.")
	}
	if c.MaxChars < 0 {
		bad("max_chars", "max_chars must be 0 (no limit) or more.")
	}
	if c.FollowMinutes <= 0 {
		bad("follow_minutes", "follow_minutes must be at least 1.")
	}
	if c.MaxToolOutput < 100 {
		bad("max_tool_output", "max_tool_output must be at least 100 characters.")
	}
	if c.ReportExamples < 0 {
		bad("report_examples", "report_examples must be 0 or more.")
	}
	return c, diags
}

const doc = `Claude Code session logs to chat SFT records

Reads Claude Code transcripts (` + "`~/.claude/projects/<project>/<session>.jsonl`" + `) of every
layout (1.0.x inline sidechains, 2.0.x ` + "`agent-*.jsonl`" + ` beside the session, 2.1.x
` + "`<session>/subagents/agent-*.jsonl`" + `) and writes one chat record per example with real tool
calls: ` + "`tool_calls`" + ` on assistant messages (arguments as JSON objects), ` + "`tool`" + ` messages
for results, and the record's ` + "`tools`" + ` list with the signatures of the tools used.

One item per session: the session file plus its sub-agent files. A changed session re-runs only
that session.

## How conversations are rebuilt

- Lines are linked by ` + "`uuid`/`parentUuid`" + `, never sorted by timestamp. Duplicate uuids keep
  their first line.
- The main branch is the path from the last user/assistant line written (in file order) back to
  its root: Claude Code appends, so the last line written is the tip of the branch the user was
  on; branches abandoned by rewinding (editing an earlier message) are dropped and counted as
  ` + "`off_branch`" + `. A compaction boundary (` + "`system/compact_boundary`" + `) is crossed through its
  ` + "`logicalParentUuid`" + `, so the history before a compaction is kept.
- Lines of one API reply (same ` + "`message.id`" + ` and ` + "`requestId`" + `) are merged into one assistant
  message, wherever they sit: parallel tool calls put sibling lines off the main path, and they are
  taken back with their results (matched by ` + "`tool_use_id`" + `). Repeated blocks are de-duplicated.
- 1.0.x inline sub-agents (` + "`isSidechain`" + ` lines) are grouped by the root of their chain, one
  conversation each. A compaction boundary whose ` + "`logicalParentUuid`" + ` is not in the file
  continues from the line before it, so a compaction never splits a session in two.
- Sub-agent conversations are examples of their own (parameter ` + "`subagents`" + `); the compaction
  agent (` + "`agent-acompact-*`" + `) is never used: its summary is context, not a target; nor are
  2.0.x cache warm-up sidechains (prompt "Warmup").
- After a compaction the summary (` + "`isCompactSummary`" + `) is the prompt of the assistant's
  continuation and context for the turns after it, never a target.

## Noise and cuts

Dropped: meta lines (` + "`isMeta`" + `), slash-command wrappers, local-command output and caveats, bash-mode
input/output, system reminders (also inside tool results), thinking blocks, server tool blocks,
API-error and synthetic assistant messages, progress/snapshot/queue/system lines. ANSI escape
codes are stripped. Images and documents become ` + "`[image omitted]`" + ` / ` + "`[document omitted]`" + `.
An example is cut at an interruption ("[Request interrupted by user]": what came before stays) and
at a rejected tool call (the assistant message that made the call and everything after it go).
Trailing tool results are removed so that every example ends with an assistant message; a turn
left without one is dropped and counted by reason.

## Modes

- ` + "`turn`" + ` (default): one example per human turn: the human message and the whole tool loop up to
  the next human message. Earlier turns of the same conversation segment are prepended as
  context, newest first, at most ` + "`context_turns`" + ` turns and ` + "`context_chars`" + ` characters (whole
  turns only, with the tool results the model saw, also turns that gave no example); their
  assistant messages carry ` + "`\"weight\": 0`" + ` so they are not trained again. With ` + "`max_chars`" + ` set,
  a turn whose messages exceed it is split at step boundaries (an assistant message and its
  results) into parts (` + "`meta.part`" + `); a later part starts with the human message and the end
  of the loop so far (whole steps within ` + "`context_chars`" + `, weight 0) as context. Long
  autonomous loops then fit a training length instead of being dropped whole.
- ` + "`pair`" + `: the original pipeline's pairs: each human text (or tool result, prefixed
  ` + "`[TOOL RESULT]`" + `) with the next assistant text; no tool calls.
- ` + "`follow`" + `: the human message plus what follows within ` + "`follow_minutes`" + ` minutes (by line
  timestamps), with tool calls, stopping at the next human message; no context.

## Secrets

Everything written is redacted first with package ` + "`stages/secrets`" + `: Anthropic, OpenAI,
GitHub, AWS and Google keys, bearer tokens, JWTs, PEM private keys, passwords in URLs and
` + "`KEY=value`" + ` secrets become ` + "`[REDACTED:<kind>]`" + `; optionally e-mails, and the user
name in home paths becomes ` + "`user`" + `. The report counts redactions by kind, never the secrets.

## Bad input

A line that is not JSON, a record or block of an unknown type, is counted by kind and listed with
file:line (the first ` + "`report_examples`" + `); a truncated last line (a log still being written) is
skipped. The stage never fails on log content.

## Parameters

| name | default | meaning |
|---|---|---|
| ` + "`mode`" + ` | ` + "`\"turn\"`" + ` | ` + "`turn`, `pair` or `follow`" + ` |
| ` + "`system_prompt`" + ` | the original pipeline's | system message of every record; ` + "`\"\"`" + ` for none |
| ` + "`subagents`" + ` | ` + "`true`" + ` | emit sub-agent conversations as examples |
| ` + "`context_turns`" + ` | ` + "`2`" + ` | earlier turns prepended as context (turn mode) |
| ` + "`context_chars`" + ` | ` + "`8000`" + ` | character budget of that context |
| ` + "`max_chars`" + ` | ` + "`0`" + ` (no limit) | split a longer tool loop into parts (turn mode) |
| ` + "`follow_minutes`" + ` | ` + "`3`" + ` | window of follow mode |
| ` + "`max_tool_output`" + ` | ` + "`6000`" + ` | longer tool results keep their first two thirds and last third around a marker |
| ` + "`redact_emails`" + ` | ` + "`false`" + ` | also redact e-mail addresses |
| ` + "`redact_home_paths`" + ` | ` + "`true`" + ` | replace user names in home paths with ` + "`user`" + ` |
| ` + "`report_examples`" + ` | ` + "`20`" + ` | how many malformed lines the report lists with file:line |

## Outputs

- ` + "`records`" + `: JSONL of chat records. ` + "`meta`" + `: ` + "`source`" + ` ("claude_logs"), ` + "`group`" + ` and
  ` + "`session`" + ` (the session id; sub-agent examples share it, so a session never straddles a
  split), ` + "`project`" + `, ` + "`agent`" + ` (sub-agents), ` + "`turn`" + `, ` + "`start`" + `/` + "`end`" + ` timestamps,
  ` + "`version`" + ` (Claude Code's), ` + "`mode`" + `, ` + "`context_messages`" + ` (leading messages after the
  system prompt that are context), ` + "`part`" + ` (split turns), ` + "`pair`" + ` (pair mode),
  ` + "`after_compaction`" + `.
- ` + "`report`" + `: JSON with sessions, files, bytes, records in (lines) by type, records out, dropped
  lines/blocks/examples by reason, redactions by kind, malformed lines by kind with examples.
`
