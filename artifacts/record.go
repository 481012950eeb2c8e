package artifacts

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// Record is one training example, one JSON object a line in a dataset
// file. It is either a chat record (Messages set; the format TRL, Axolotl
// and LLaMA-Factory read) or a prompt/completion record (Prompt and
// Completion set; FIM examples use this form, with the loss on the
// completion only). Meta carries provenance: at least "source" and
// "group" (the unit that must not straddle train and eval, such as a
// session id or a repository file).
type Record struct {
	Messages   []Message      `json:"messages,omitempty"`
	Tools      []Tool         `json:"tools,omitempty"`
	Prompt     string         `json:"prompt,omitempty"`
	Completion string         `json:"completion,omitempty"`
	Meta       map[string]any `json:"meta,omitempty"`
}

// Message is one chat turn. Role is system, user, assistant or tool.
type Message struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// Name is the tool name on role "tool" messages (optional).
	Name string `json:"name,omitempty"`
	// ToolCallID links a tool result to its call (optional; the Qwen
	// template does not render it).
	ToolCallID string `json:"tool_call_id,omitempty"`
	// Weight, when set, scales the message's contribution to the loss;
	// 0 excludes an assistant message that is only context (an earlier
	// turn placed before the one an example teaches), as Axolotl's
	// per-message "weight" does. Nil means the role's default (assistant
	// trained, others not).
	Weight *float64 `json:"weight,omitempty"`
}

// ToolCall is an assistant's call of a tool, in the OpenAI/HF form.
type ToolCall struct {
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names the tool and carries its arguments as a JSON object.
type FunctionCall struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// Tool is a tool signature offered to the model (rendered in the system
// prompt by the chat template).
type Tool struct {
	Type     string          `json:"type"`
	Function json.RawMessage `json:"function"`
}

// IsChat reports whether r is a chat record.
func (r *Record) IsChat() bool { return len(r.Messages) > 0 }

// MetaString returns Meta[key] as a string, or "".
func (r *Record) MetaString(key string) string {
	if r.Meta == nil {
		return ""
	}
	s, _ := r.Meta[key].(string)
	return s
}

// RecordWriter writes records as JSONL. Output is deterministic: Go's
// encoding/json sorts map keys and the struct fields have a fixed order.
type RecordWriter struct {
	w   *bufio.Writer
	enc *json.Encoder
	n   int
}

// NewRecordWriter returns a writer of JSONL records to w. Call Flush.
func NewRecordWriter(w io.Writer) *RecordWriter {
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &RecordWriter{w: bw, enc: enc}
}

// Write appends one record.
func (rw *RecordWriter) Write(r *Record) error {
	rw.n++
	return rw.enc.Encode(r)
}

// Count is the number of records written.
func (rw *RecordWriter) Count() int { return rw.n }

// Flush writes buffered data.
func (rw *RecordWriter) Flush() error { return rw.w.Flush() }

// RecordReader streams JSONL records. Lines may be long (whole sessions).
type RecordReader struct {
	sc   *bufio.Scanner
	line int
	name string
}

// NewRecordReader reads records from r; name (a file path) appears in
// errors.
func NewRecordReader(r io.Reader, name string) *RecordReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<30)
	return &RecordReader{sc: sc, name: name}
}

// Next returns the next record, io.EOF at the end, or an error that names
// the file and line of a malformed record.
func (rr *RecordReader) Next() (*Record, error) {
	for rr.sc.Scan() {
		rr.line++
		b := rr.sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", rr.name, rr.line, err)
		}
		return &rec, nil
	}
	if err := rr.sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %v", rr.name, rr.line+1, err)
	}
	return nil, io.EOF
}

// Line is the line number of the record last returned.
func (rr *RecordReader) Line() int { return rr.line }
