package claudelogs

import (
	"strings"
	"time"

	"github.com/pipeml/pipe/artifacts"
)

// timed is a message with the timestamp of its line.
type timed struct {
	msg artifacts.Message
	ts  string
}

// turn is a prompt (a human message, or a compaction summary) and what
// followed it up to the next prompt, after cuts.
type turn struct {
	index   int
	prompt  timed
	summary bool
	msgs    []timed
	// ctx is what the turn contributes as context to later turns: msgs
	// before trailing tool results were removed (the model saw them).
	ctx []timed
	cut string
	// dropped is why the turn gives no example ("" when it does).
	dropped string
}

// segments cuts a conversation's events into turns; a compaction summary
// starts a new segment, so context never reaches across a compaction
// except through the summary.
func segments(evs []event, rep *Report) [][]*turn {
	var segs [][]*turn
	var cur []*turn
	var t *turn
	cutActive := false
	n := 0
	finish := func() {
		if t == nil {
			return
		}
		t.ctx = t.msgs
		for len(t.msgs) > 0 && t.msgs[len(t.msgs)-1].msg.Role != "assistant" {
			t.msgs = t.msgs[:len(t.msgs)-1]
		}
		if len(t.msgs) == 0 {
			switch {
			case t.cut != "":
				t.dropped = t.cut
			case t.summary:
				t.dropped = "summary_only"
			default:
				t.dropped = "no_assistant"
			}
		}
		cur = append(cur, t)
		t = nil
	}
	for _, e := range evs {
		switch e.kind {
		case evSummary:
			finish()
			if len(cur) > 0 {
				segs = append(segs, cur)
			}
			cur = nil
			t = &turn{index: n, prompt: timed{e.msg, e.ts}, summary: true}
			n++
			cutActive = false
		case evHuman:
			finish()
			t = &turn{index: n, prompt: timed{e.msg, e.ts}}
			n++
			cutActive = false
		case evAssistant, evTool, evUser:
			switch {
			case t == nil:
				rep.drop("no_prompt", 1)
			case cutActive:
				rep.drop("after_cut", 1)
			default:
				t.msgs = append(t.msgs, timed{e.msg, e.ts})
			}
		case evCut:
			if t == nil || cutActive {
				continue
			}
			cutActive = true
			t.cut = e.cut
			if e.dropLast {
				for i := len(t.msgs) - 1; i >= 0; i-- {
					if t.msgs[i].msg.Role == "assistant" {
						rep.drop("rejected_call", len(t.msgs)-i)
						t.msgs = t.msgs[:i]
						break
					}
				}
			}
		}
	}
	finish()
	if len(cur) > 0 {
		segs = append(segs, cur)
	}
	return segs
}

// example is one record to write before meta is attached.
type example struct {
	turn     *turn
	msgs     []artifacts.Message // without the system message
	context  int                 // leading messages that are context
	start    string
	end      string
	pairSeq  int
	hasPairs bool
	part     int  // the part of a split turn
	split    bool // the turn was split into parts
}

var zero = 0.0

// turnExamples builds turn-mode examples: each valid turn with up to
// ContextTurns earlier turns of its segment (whole turns, newest first,
// within ContextChars) before it.
func turnExamples(seg []*turn, cfg *Config) []example {
	var out []example
	for i, t := range seg {
		if t.dropped != "" {
			continue
		}
		var ctx []artifacts.Message
		chars, turns := 0, 0
		for j := i - 1; j >= 0 && turns < cfg.ContextTurns; j-- {
			// Every earlier turn is context, also one that gave no
			// example ("ok fix it" before an API error explains the
			// "try again" after it).
			p := seg[j]
			c := len(p.prompt.msg.Content)
			for _, m := range p.ctx {
				c += messageChars(m.msg)
			}
			if chars+c > cfg.ContextChars {
				break
			}
			chars += c
			turns++
			part := []artifacts.Message{p.prompt.msg}
			for _, m := range p.ctx {
				mm := m.msg
				if mm.Role == "assistant" {
					mm.Weight = &zero
				}
				part = append(part, mm)
			}
			ctx = append(part, ctx...)
		}
		chunks := [][]timed{t.msgs}
		if cfg.MaxChars > 0 {
			chunks = splitLoop(t.msgs, cfg.MaxChars-len(t.prompt.msg.Content))
		}
		done := 0 // loop messages before the current chunk
		for k, chunk := range chunks {
			var msgs []artifacts.Message
			if k == 0 {
				msgs = append(ctx, t.prompt.msg)
			} else {
				// A later part: the prompt, then the end of the loop so
				// far (whole steps within context_chars) as context.
				msgs = []artifacts.Message{t.prompt.msg}
				start, chars := done, 0
				for start > 0 {
					s := stepStart(t.msgs, start-1)
					c := 0
					for _, m := range t.msgs[s:start] {
						c += messageChars(m.msg)
					}
					if chars+c > cfg.ContextChars {
						break
					}
					chars += c
					start = s
				}
				for _, m := range t.msgs[start:done] {
					mm := m.msg
					if mm.Role == "assistant" {
						mm.Weight = &zero
					}
					msgs = append(msgs, mm)
				}
			}
			contextN := len(msgs) - 1
			// A part ends with its last assistant message; the results
			// after it open the next part's context.
			body := chunk
			for len(body) > 0 && body[len(body)-1].msg.Role != "assistant" {
				body = body[:len(body)-1]
			}
			for _, m := range body {
				msgs = append(msgs, m.msg)
			}
			ex := example{turn: t, msgs: msgs, context: contextN, start: t.prompt.ts, end: body[len(body)-1].ts, part: k, split: len(chunks) > 1}
			out = append(out, ex)
			done += len(chunk)
		}
	}
	return out
}

// stepStart returns the index of the assistant message that starts the
// step holding msgs[i] (a step is an assistant message and the tool
// results and other input that follow it).
func stepStart(msgs []timed, i int) int {
	for i > 0 && msgs[i].msg.Role != "assistant" {
		i--
	}
	return i
}

// splitLoop cuts a turn's loop into parts of at most budget characters
// at step boundaries (a step is an assistant message and what follows it
// up to the next one, so every part starts with an assistant message). A
// step longer than the budget is a part of its own.
func splitLoop(msgs []timed, budget int) [][]timed {
	var steps [][]timed
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && msgs[j].msg.Role != "assistant" {
			j++
		}
		steps = append(steps, msgs[i:j])
		i = j
	}
	var parts [][]timed
	var cur []timed
	chars := 0
	for _, st := range steps {
		c := 0
		for _, m := range st {
			c += messageChars(m.msg)
		}
		if len(cur) > 0 && chars+c > budget {
			parts = append(parts, cur)
			cur, chars = nil, 0
		}
		cur = append(cur, st...)
		chars += c
	}
	if len(cur) > 0 {
		parts = append(parts, cur)
	}
	return parts
}

func messageChars(m artifacts.Message) int {
	c := len(m.Content)
	for _, tc := range m.ToolCalls {
		c += len(tc.Function.Name) + len(tc.Function.Arguments)
	}
	return c
}

// followExamples builds follow-mode examples: each human turn with what
// followed it within FollowMinutes of the human message.
func followExamples(seg []*turn, cfg *Config, rep *Report) []example {
	var out []example
	window := time.Duration(cfg.FollowMinutes) * time.Minute
	for _, t := range seg {
		if t.dropped != "" || t.summary {
			continue
		}
		start, err := time.Parse(time.RFC3339Nano, t.prompt.ts)
		var kept []timed
		for _, m := range t.msgs {
			if err == nil {
				if ts, err2 := time.Parse(time.RFC3339Nano, m.ts); err2 == nil && ts.Sub(start) > window {
					break
				}
			}
			kept = append(kept, m)
		}
		for len(kept) > 0 && kept[len(kept)-1].msg.Role != "assistant" {
			kept = kept[:len(kept)-1]
		}
		if len(kept) == 0 {
			rep.DroppedTurns["outside_follow_window"]++
			continue
		}
		msgs := []artifacts.Message{t.prompt.msg}
		for _, m := range kept {
			msgs = append(msgs, m.msg)
		}
		out = append(out, example{turn: t, msgs: msgs, start: t.prompt.ts, end: kept[len(kept)-1].ts})
	}
	return out
}

// pairExamples builds the original pipeline's pairs: each human text, or
// tool result prefixed "[TOOL RESULT]", with the next assistant text.
func pairExamples(seg []*turn) []example {
	var out []example
	for _, t := range seg {
		if t.dropped != "" {
			continue
		}
		var pending []string
		pendingTS := ""
		if !t.summary {
			pending = append(pending, t.prompt.msg.Content)
			pendingTS = t.prompt.ts
		}
		seq := 0
		for _, m := range t.msgs {
			switch m.msg.Role {
			case "tool":
				if len(pending) == 0 {
					pendingTS = m.ts
				}
				pending = append(pending, "[TOOL RESULT] "+m.msg.Content)
			case "user":
				if len(pending) == 0 {
					pendingTS = m.ts
				}
				pending = append(pending, m.msg.Content)
			case "assistant":
				if strings.TrimSpace(m.msg.Content) == "" || len(pending) == 0 {
					continue
				}
				out = append(out, example{
					turn: t,
					msgs: []artifacts.Message{
						{Role: "user", Content: strings.Join(pending, "\n\n")},
						{Role: "assistant", Content: m.msg.Content},
					},
					start: pendingTS, end: m.ts, pairSeq: seq, hasPairs: true,
				})
				seq++
				pending = nil
			}
		}
	}
	return out
}
