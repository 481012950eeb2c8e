package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/pipeml/pipe/artifacts"
)

// DefaultSystemPrompt is the system prompt the Qwen2.5 template inserts
// when the first message is not a system message.
const DefaultSystemPrompt = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

// Text of the Qwen2.5 template around the tool signatures.
const (
	toolsHeader = "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>"
	toolsFooter = "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
)

// RenderChat renders messages (and the tool signatures offered, if any)
// with the Qwen2.5 chat template, producing exactly the string that Hugging
// Face's tokenizer.apply_chat_template(messages, tools=tools,
// add_generation_prompt=addGenerationPrompt, tokenize=False) produces with
// the Qwen2.5 tokenizer_config.json:
//
//	<|im_start|>system\n{system prompt}[tools block]<|im_end|>\n
//	<|im_start|>user\n{content}<|im_end|>\n
//	<|im_start|>assistant\n{content}<|im_end|>\n
//	<|im_start|>assistant[\n{content}]\n<tool_call>\n{"name": "...", "arguments": {...}}\n</tool_call>...<|im_end|>\n
//	<|im_start|>user\n<tool_response>\n{result}\n</tool_response>[\n<tool_response>...]<|im_end|>\n
//	[<|im_start|>assistant\n]
//
// The system prompt is the first message's content if it is a system
// message, else [DefaultSystemPrompt]. The tools block lists each tool as
// one JSON line. Tool-call arguments and tool signatures are written as
// the template's tojson filter (Python's json.dumps) writes them; arguments
// given as a JSON string stay a quoted string, as in Hugging Face.
// Consecutive tool messages share one user turn. A system message after
// the first renders as a system turn.
//
// The template silently drops messages with another role; RenderChat
// returns an error for them instead, as it does for malformed JSON in
// arguments or tool signatures. Invalid UTF-8 is replaced with U+FFFD.
func RenderChat(messages []artifacts.Message, tools []artifacts.Tool, addGenerationPrompt bool) (string, error) {
	var r chatRenderer
	if err := r.render(messages, tools, addGenerationPrompt); err != nil {
		return "", err
	}
	return r.b.String(), nil
}

// chatRenderer renders a conversation and records which byte ranges of
// the output the assistant produced.
type chatRenderer struct {
	b strings.Builder
	// assistant holds the [start, end) byte ranges of assistant turns:
	// from just after "<|im_start|>assistant\n" through "<|im_end|>".
	assistant [][2]int
}

func (r *chatRenderer) text(s string) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	r.b.WriteString(s)
}

func (r *chatRenderer) render(msgs []artifacts.Message, tools []artifacts.Tool, addGenerationPrompt bool) error {
	b := &r.b
	hasSystem := len(msgs) > 0 && msgs[0].Role == "system"
	if len(tools) > 0 {
		b.WriteString("<|im_start|>system\n")
		if hasSystem {
			r.text(msgs[0].Content)
		} else {
			b.WriteString(DefaultSystemPrompt)
		}
		b.WriteString(toolsHeader)
		for i, tool := range tools {
			b.WriteString("\n")
			// {"type": ..., "function": ...} in the field order of a record.
			b.WriteString(`{"type": `)
			pyString(b, strings.ToValidUTF8(tool.Type, "\uFFFD"))
			b.WriteString(`, "function": `)
			if err := pyJSON(b, tool.Function); err != nil {
				return fmt.Errorf("tool %d: function: %v", i, err)
			}
			b.WriteString("}")
		}
		b.WriteString(toolsFooter)
	} else {
		b.WriteString("<|im_start|>system\n")
		if hasSystem {
			r.text(msgs[0].Content)
		} else {
			b.WriteString(DefaultSystemPrompt)
		}
		b.WriteString("<|im_end|>\n")
	}
	for i, m := range msgs {
		switch {
		case m.Role == "user" || (m.Role == "system" && i > 0):
			b.WriteString("<|im_start|>" + m.Role + "\n")
			r.text(m.Content)
			b.WriteString("<|im_end|>\n")
		case m.Role == "system":
			// The first system message is already in the system turn.
		case m.Role == "assistant":
			b.WriteString("<|im_start|>assistant\n")
			start := b.Len()
			if len(m.ToolCalls) == 0 {
				r.text(m.Content)
			} else {
				// The template writes "<|im_start|>assistant", then "\n"
				// before the content if any and before each tool call; the
				// first of those newlines is the one written above.
				if m.Content != "" {
					r.text(m.Content)
				}
				for j, tc := range m.ToolCalls {
					if m.Content != "" || j > 0 {
						b.WriteString("\n")
					}
					b.WriteString("<tool_call>\n{\"name\": \"")
					r.text(tc.Function.Name)
					b.WriteString("\", \"arguments\": ")
					if err := pyJSON(b, tc.Function.Arguments); err != nil {
						return fmt.Errorf("message %d: tool call %d (%s): arguments: %v", i, j, tc.Function.Name, err)
					}
					b.WriteString("}\n</tool_call>")
				}
			}
			b.WriteString("<|im_end|>")
			if m.Weight == nil || *m.Weight != 0 {
				// A weight-0 assistant message is context only: rendered,
				// never trained on.
				r.assistant = append(r.assistant, [2]int{start, b.Len()})
			}
			b.WriteString("\n")
		case m.Role == "tool":
			if i == 0 || msgs[i-1].Role != "tool" {
				b.WriteString("<|im_start|>user")
			}
			b.WriteString("\n<tool_response>\n")
			r.text(m.Content)
			b.WriteString("\n</tool_response>")
			if i == len(msgs)-1 || msgs[i+1].Role != "tool" {
				b.WriteString("<|im_end|>\n")
			}
		default:
			return fmt.Errorf("message %d: role %q is not one of system, user, assistant, tool", i, m.Role)
		}
	}
	if addGenerationPrompt {
		b.WriteString("<|im_start|>assistant\n")
	}
	return nil
}
