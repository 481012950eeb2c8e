// Package claudelogs is the claude_logs stage kind: it turns Claude Code
// session transcripts (~/.claude/projects/**/*.jsonl) into chat SFT
// records with real tool calls.
//
// It is a map stage with one item per session: the session file and its
// sub-agent files (2.1.x <session>/subagents/agent-*.jsonl, 2.0.x
// agent-*.jsonl beside it, 1.0.x inline isSidechain chains). Items
// (items.go) finds and groups the files; parse.go reads lines without ever
// failing on a bad one; thread.go rebuilds conversations from the
// uuid/parentUuid chain into events; examples.go cuts events into turns
// and builds records by mode; tools.go holds the tool signatures the
// records carry. Secrets are redacted with package stages/secrets before
// anything is written.
package claudelogs
