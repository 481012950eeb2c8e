package dedupe

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/pipeml/pipe/artifacts"
	"github.com/zeebo/blake3"
)

// Key identifies the normalised content of a record.
type Key [16]byte

// Normalize collapses every run of white space into one space and trims
// both ends. It is the normalisation behind ExactKey: records that differ
// only in spacing, indentation or line endings are the same content.
func Normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// ExactKey returns the key of rec's normalised content. For a chat record
// that is every non-system message (role, content, tool calls with their
// arguments); system prompts and tool signatures are configuration, not
// content, and do not count. For a prompt/completion record it is the
// prompt and the completion. Meta never counts.
func ExactKey(rec *artifacts.Record) Key {
	h := blake3.New()
	if rec.IsChat() {
		h.Write([]byte("chat\x1e"))
		for _, m := range rec.Messages {
			if m.Role == "system" {
				continue
			}
			h.Write([]byte(m.Role))
			h.Write([]byte{0x1f})
			h.Write([]byte(Normalize(m.Content)))
			for _, tc := range m.ToolCalls {
				h.Write([]byte{0x1f})
				h.Write([]byte(tc.Function.Name))
				h.Write([]byte{0x1f})
				h.Write([]byte(Normalize(compactJSON(tc.Function.Arguments))))
			}
			h.Write([]byte{0x1e})
		}
	} else {
		h.Write([]byte("pc\x1e"))
		h.Write([]byte(Normalize(rec.Prompt)))
		h.Write([]byte{0x1e})
		h.Write([]byte(Normalize(rec.Completion)))
	}
	var k Key
	sum := h.Sum(nil)
	copy(k[:], sum)
	return k
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// Text is the text near-duplicate detection compares. For a chat record
// it is the content of the messages whose role is in roles, in order,
// with the tool calls of assistant messages (name and arguments) when
// "assistant" is among roles. For a prompt/completion record it is
// CodeText.
func Text(rec *artifacts.Record, roles []string) string {
	if !rec.IsChat() {
		return CodeText(rec)
	}
	var b strings.Builder
	for _, m := range rec.Messages {
		if !hasRole(roles, m.Role) {
			continue
		}
		b.WriteString(m.Content)
		b.WriteByte('\n')
		for _, tc := range m.ToolCalls {
			b.WriteString(tc.Function.Name)
			b.WriteByte(' ')
			b.Write(tc.Function.Arguments)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func hasRole(roles []string, r string) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

// Qwen2.5-Coder FIM markers (FORMATS.md section 2).
const (
	fimPrefix = "<|fim_prefix|>"
	fimSuffix = "<|fim_suffix|>"
	fimMiddle = "<|fim_middle|>"
)

// CodeText returns the code a record stands for. For a FIM record in PSM
// form (`<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>` + middle) it is
// the window put back together, P + middle + S, preceded by any
// repository context before the prefix marker, so that line lengths and
// shingles see the code as it was written. Other special tokens
// (`<|repo_name|>`, `<|file_sep|>`, `<|endoftext|>`, ...) become line
// breaks. A prompt/completion record that is not FIM gives prompt +
// completion; a chat record gives its non-system contents joined by line
// breaks.
func CodeText(rec *artifacts.Record) string {
	if rec.IsChat() {
		var b strings.Builder
		for _, m := range rec.Messages {
			if m.Role == "system" {
				continue
			}
			b.WriteString(m.Content)
			b.WriteByte('\n')
		}
		return StripSpecial(b.String())
	}
	p, c := rec.Prompt, strings.TrimSuffix(rec.Completion, "<|endoftext|>")
	i := strings.Index(p, fimPrefix)
	j := strings.Index(p, fimSuffix)
	k := strings.Index(p, fimMiddle)
	if i >= 0 && j > i && k > j {
		s := p[:i] + p[i+len(fimPrefix):j] + c + p[j+len(fimSuffix):k] + p[k+len(fimMiddle):]
		return StripSpecial(s)
	}
	return StripSpecial(p + c)
}

// StripSpecial replaces every special token of the form <|name|> (ASCII
// letters, digits and underscores between the bars) with a line break.
func StripSpecial(s string) string {
	if !strings.Contains(s, "<|") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for {
		i := strings.Index(s, "<|")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		n := specialLen(s[i:])
		if n == 0 {
			b.WriteString(s[:i+2])
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		b.WriteByte('\n')
		s = s[i+n:]
	}
}

// specialLen returns the length of the special token at the start of s,
// or 0 when s does not start with one.
func specialLen(s string) int {
	for i := 2; i < len(s) && i < 64; i++ {
		c := s[i]
		switch {
		case c == '|':
			if i > 2 && i+1 < len(s) && s[i+1] == '>' {
				return i + 2
			}
			return 0
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
		default:
			return 0
		}
	}
	return 0
}

// isWordByte marks the ASCII bytes that belong to words.
var isWordByte = func() (t [256]bool) {
	for c := 0; c < 128; c++ {
		t[c] = c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	return t
}()

// words calls fn with each word of s: a maximal run of letters, digits
// and underscores (any script). Unlike BigCode's split on [^A-Za-z_0-9],
// runs of separators yield no empty words, and non-ASCII letters are part
// of words.
func words(s string, fn func(w string)) {
	start := -1
	for i := 0; i < len(s); {
		c := s[i]
		var word bool
		size := 1
		if c < utf8.RuneSelf {
			word = isWordByte[c]
		} else {
			r, n := utf8.DecodeRuneInString(s[i:])
			size = n
			word = unicode.IsLetter(r) || unicode.IsDigit(r)
		}
		if word {
			if start < 0 {
				start = i
			}
		} else if start >= 0 {
			fn(s[start:i])
			start = -1
		}
		i += size
	}
	if start >= 0 {
		fn(s[start:])
	}
}
