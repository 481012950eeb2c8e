package claudelogs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// rawLine is the envelope of one transcript line, as decodeLine fills it.
// Fields not listed (the large data of progress lines, toolUseResult,
// usage) are skipped.
type rawLine struct {
	Type                      string
	Subtype                   string
	UUID                      string
	ParentUUID                *string
	LogicalParentUUID         string
	SessionID                 string
	Timestamp                 string
	Version                   string
	Cwd                       string
	AgentID                   string
	RequestID                 string
	IsSidechain               bool
	IsMeta                    bool
	IsCompactSummary          bool
	IsVisibleInTranscriptOnly bool
	IsAPIErrorMessage         bool
	Message                   *rawMessage
	// Rejected is set when toolUseResult is the string "User rejected
	// tool use".
	Rejected bool
}

type rawMessage struct {
	ID      string          `json:"id"`
	Role    string          `json:"role"`
	Model   string          `json:"model"`
	Content json.RawMessage `json:"content"`
}

// rawBlock is one content block of a message.
type rawBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
}

// node is one parsed line with a uuid (a chat, progress or system line).
type node struct {
	rawLine
	file   int // index into the item's files
	line   int // 1-based
	pos    int // index in parsedFile.nodes
	blocks []rawBlock
	// stringContent is set when message.content was a plain string (then
	// blocks holds one text block).
	stringContent bool
}

// groupKey identifies the API reply an assistant line belongs to.
func (n *node) groupKey() string {
	if n.Message == nil || n.Message.ID == "" {
		return "uuid:" + n.UUID
	}
	return n.Message.ID + "\x00" + n.RequestID
}

func (n *node) parent() string {
	if n.ParentUUID == nil {
		return ""
	}
	return *n.ParentUUID
}

// knownTypes are the record types Claude Code writes that are understood
// (conversation) or deliberately skipped (everything else listed).
var knownTypes = map[string]bool{
	"user": true, "assistant": true, "system": true, "summary": true,
	"file-history-snapshot": true, "queue-operation": true, "progress": true,
	"attachment": true, "custom-title": true, "tag": true, "agent-name": true,
	"pr-link": true, "last-prompt": true,
}

// knownBlocks are the content block types understood per role.
var knownBlocks = map[string]bool{
	"text": true, "thinking": true, "redacted_thinking": true, "tool_use": true,
	"server_tool_use": true, "web_search_tool_result": true, "web_fetch_tool_result": true,
	"tool_result": true, "image": true, "document": true, "mcp_tool_use": true,
	"mcp_tool_result": true, "code_execution_tool_result": true,
}

// parsedFile is the result of reading one transcript file.
type parsedFile struct {
	name  string // display name for file:line messages
	nodes []*node
	bytes int64
}

// parseFile reads path. It never fails on content: bad lines are counted
// in rep. It fails only when the file cannot be read.
func parseFile(path, name string, fileIndex int, rep *Report, maxExamples int) (*parsedFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pf := &parsedFile{name: name, bytes: int64(len(data))}
	rep.Bytes += int64(len(data))
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		var ln []byte
		complete := true
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			ln, data = data[:i], data[i+1:]
		} else {
			ln, data = data, nil
			complete = false
		}
		ln = bytes.TrimSpace(ln)
		if len(ln) == 0 {
			continue
		}
		rep.LinesIn++
		n := &node{file: fileIndex, line: lineNo}
		if err := decodeLine(ln, &n.rawLine); err != nil {
			switch {
			case !complete && errors.Is(err, errSyntax):
				rep.malformed(name, lineNo, "truncated_last_line", "the last line is incomplete (a log still being written?)", maxExamples)
			case errors.Is(err, errType):
				rep.malformed(name, lineNo, "invalid_record", jsonError(err), maxExamples)
			default:
				rep.malformed(name, lineNo, "invalid_json", jsonError(err), maxExamples)
			}
			continue
		}
		t := n.Type
		if t == "" {
			t = "(none)"
		}
		rep.LinesByType[t]++
		if !knownTypes[n.Type] {
			rep.malformed(name, lineNo, "unknown_type", fmt.Sprintf("record type %q", n.Type), maxExamples)
			continue
		}
		if n.UUID == "" {
			// summary, file-history-snapshot, queue-operation and the
			// like: not part of any chain.
			rep.drop("type:"+n.Type, 1)
			continue
		}
		if n.Type == "user" || n.Type == "assistant" {
			if !parseContent(n, pf.name, rep, maxExamples) {
				continue
			}
		}
		pf.nodes = append(pf.nodes, n)
	}
	return pf, nil
}

// parseContent decodes message.content into blocks. A chat line whose
// message cannot be read is reported and dropped.
func parseContent(n *node, name string, rep *Report, maxExamples int) bool {
	if n.Message == nil {
		rep.malformed(name, n.line, "missing_message", n.Type+" line without a message", maxExamples)
		return false
	}
	c := bytes.TrimSpace(n.Message.Content)
	switch {
	case len(c) == 0 || string(c) == "null":
		n.blocks = nil
	case c[0] == '"':
		var s string
		if err := json.Unmarshal(c, &s); err != nil {
			rep.malformed(name, n.line, "invalid_content", jsonError(err), maxExamples)
			return false
		}
		n.blocks = []rawBlock{{Type: "text", Text: s}}
		n.stringContent = true
	case c[0] == '[':
		if err := json.Unmarshal(c, &n.blocks); err != nil {
			rep.malformed(name, n.line, "invalid_content", jsonError(err), maxExamples)
			return false
		}
	default:
		rep.malformed(name, n.line, "invalid_content", "message.content is neither a string nor a list of blocks", maxExamples)
		return false
	}
	for _, b := range n.blocks {
		if !knownBlocks[b.Type] {
			rep.malformed(name, n.line, "unknown_block", fmt.Sprintf("content block type %q", b.Type), maxExamples)
		}
	}
	return true
}

// jsonError shortens a decoding error; it never quotes the line itself,
// which may hold a secret.
func jsonError(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}
