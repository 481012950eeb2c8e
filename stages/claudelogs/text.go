package claudelogs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/pipeml/pipe/stages/secrets"
)

// stripANSI removes terminal escape sequences: CSI (ESC [ ... final),
// OSC (ESC ] ... BEL or ESC \), and other two-byte escapes.
func stripANSI(s string) string {
	if strings.IndexByte(s, 0x1b) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != 0x1b {
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(s) {
			break
		}
		switch s[i+1] {
		case '[':
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j + 1
		case ']':
			j := i + 2
			for j < len(s) {
				if s[j] == 0x07 {
					j++
					break
				}
				if s[j] == 0x1b && j+1 < len(s) && s[j+1] == '\\' {
					j += 2
					break
				}
				j++
			}
			i = j
		default:
			i += 2
		}
	}
	return b.String()
}

// stripTag removes every <tag>...</tag> span and returns how many it
// removed. An unclosed tag removes to the end.
func stripTag(s, tag string) (string, int) {
	open, closing := "<"+tag+">", "</"+tag+">"
	if !strings.Contains(s, open) {
		return s, 0
	}
	var b strings.Builder
	n := 0
	for {
		i := strings.Index(s, open)
		if i < 0 {
			b.WriteString(s)
			break
		}
		n++
		b.WriteString(s[:i])
		rest := s[i+len(open):]
		j := strings.Index(rest, closing)
		if j < 0 {
			break
		}
		s = rest[j+len(closing):]
	}
	return b.String(), n
}

// userKind classifies the text of a user line.
type userKind int

const (
	userHuman userKind = iota
	userEmpty
	userSlashCommand
	userLocalCommand
	userBashMode
	userMemory
	userInterrupted
	userNotification
)

var userKindReason = map[userKind]string{
	userEmpty:        "empty_user_text",
	userSlashCommand: "slash_command",
	userLocalCommand: "local_command_output",
	userBashMode:     "bash_mode",
	userMemory:       "memory_input",
}

func classifyUser(s string) userKind {
	t := strings.TrimSpace(s)
	switch {
	case t == "":
		return userEmpty
	case strings.HasPrefix(t, "[Request interrupted by user"):
		return userInterrupted
	case strings.Contains(t, "<command-name>") || strings.Contains(t, "<command-message>"):
		return userSlashCommand
	case strings.HasPrefix(t, "<local-command-"):
		return userLocalCommand
	case strings.HasPrefix(t, "<bash-input>") || strings.HasPrefix(t, "<bash-stdout>") || strings.HasPrefix(t, "<bash-stderr>"):
		return userBashMode
	case strings.HasPrefix(t, "<user-memory-input>"):
		return userMemory
	case strings.HasPrefix(t, "<task-notification>"):
		return userNotification
	}
	return userHuman
}

// isCompactionText reports the text Claude Code puts before a compaction
// summary (also in versions without isCompactSummary).
func isCompactionText(s string) bool {
	return strings.HasPrefix(strings.TrimSpace(s), "This session is being continued from a previous conversation")
}

// isRejection reports a tool result that says the user refused or stopped
// the call.
func isRejection(s string) bool {
	t := strings.TrimSpace(s)
	return strings.HasPrefix(t, "The user doesn't want to proceed with this tool use") ||
		strings.HasPrefix(t, "The user doesn't want to take this action") ||
		strings.HasPrefix(t, "[Request interrupted by user for tool use]")
}

// truncate keeps the first two thirds and the last third of max
// characters of s around a marker saying how many were left out.
func truncate(s string, max int) (string, bool) {
	if utf8.RuneCountInString(s) <= max {
		return s, false
	}
	head, tail := max*2/3, max-max*2/3
	runes := []rune(s)
	cut := len(runes) - head - tail
	return string(runes[:head]) + fmt.Sprintf("\n[... %d characters truncated ...]\n", cut) + string(runes[len(runes)-tail:]), true
}

const (
	imageMarker    = "[image omitted]"
	documentMarker = "[document omitted]"
)

// toolResultText flattens a tool_result's content (a string or a list of
// text and image blocks).
func toolResultText(raw json.RawMessage) (text string, images int) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", 0
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s, 0
		}
		return "", 0
	}
	var blocks []rawBlock
	if json.Unmarshal(raw, &blocks) != nil {
		return "", 0
	}
	parts := make([]string, 0, len(blocks))
	for _, b := range blocks {
		switch b.Type {
		case "text":
			parts = append(parts, b.Text)
		case "image":
			parts = append(parts, imageMarker)
			images++
		case "document":
			parts = append(parts, documentMarker)
			images++
		}
	}
	return strings.Join(parts, "\n"), images
}

// redactJSON redacts every string (keys included) of a JSON value and
// re-encodes it compactly, keeping the order of object keys.
func redactJSON(raw json.RawMessage, det *secrets.Detector, counts secrets.Counts) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out bytes.Buffer
	// stack of container states: for objects, whether the next token is a key.
	type frame struct {
		object  bool
		n       int
		wantKey bool
	}
	var stack []frame
	writeSep := func() {
		if len(stack) == 0 {
			return
		}
		f := &stack[len(stack)-1]
		if f.object {
			if f.wantKey {
				if f.n > 0 {
					out.WriteByte(',')
				}
				f.n++
				f.wantKey = false
			} else {
				out.WriteByte(':')
				f.wantKey = true
			}
			return
		}
		if f.n > 0 {
			out.WriteByte(',')
		}
		f.n++
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				writeSep()
				out.WriteByte(byte(v))
				stack = append(stack, frame{object: v == '{', wantKey: true})
			case '}', ']':
				stack = stack[:len(stack)-1]
				out.WriteByte(byte(v))
			}
		case string:
			writeSep()
			s := det.Redact(v, counts)
			enc, _ := marshalNoEscape(s)
			out.Write(enc)
		case json.Number:
			writeSep()
			out.WriteString(string(v))
		case bool:
			writeSep()
			if v {
				out.WriteString("true")
			} else {
				out.WriteString("false")
			}
		case nil:
			writeSep()
			out.WriteString("null")
		}
	}
	return out.Bytes(), nil
}

// marshalNoEscape encodes s as a JSON string without HTML escaping.
func marshalNoEscape(s string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
