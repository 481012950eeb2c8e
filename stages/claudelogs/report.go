package claudelogs

import (
	"github.com/pipeml/pipe/stages/secrets"
)

// Problem is one malformed line, named by file and line. It never holds
// the line's content.
type Problem struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// Report is what the stage writes to its report output: the sum of the
// per-session reports.
type Report struct {
	Sessions      int   `json:"sessions"`
	Files         int   `json:"files"`
	SubagentFiles int   `json:"subagent_files"`
	Bytes         int64 `json:"bytes"`
	// LinesIn is the number of non-empty input lines ("records in").
	LinesIn     int            `json:"records_in"`
	LinesByType map[string]int `json:"records_in_by_type"`
	// RecordsOut is the number of training records written.
	RecordsOut            int `json:"records_out"`
	Conversations         int `json:"conversations"`
	SubagentConversations int `json:"subagent_conversations"`
	Turns                 int `json:"turns"`
	// Dropped counts input lines and content blocks left out, by reason.
	Dropped map[string]int `json:"dropped"`
	// DroppedTurns counts turns that gave no example, by reason.
	DroppedTurns         map[string]int `json:"dropped_turns"`
	Redactions           map[string]int `json:"redactions"`
	TruncatedToolOutputs int            `json:"truncated_tool_outputs"`
	OmittedImages        int            `json:"omitted_images"`
	// Malformed counts bad lines by kind; MalformedExamples lists the
	// first few with file and line.
	Malformed         map[string]int `json:"malformed"`
	MalformedExamples []Problem      `json:"malformed_examples"`
}

func newReport() *Report {
	return &Report{
		LinesByType:       map[string]int{},
		Dropped:           map[string]int{},
		DroppedTurns:      map[string]int{},
		Redactions:        map[string]int{},
		Malformed:         map[string]int{},
		MalformedExamples: []Problem{},
	}
}

func (r *Report) drop(reason string, n int) {
	if n > 0 {
		r.Dropped[reason] += n
	}
}

func (r *Report) malformed(file string, line int, kind, detail string, max int) {
	r.Malformed[kind]++
	if len(r.MalformedExamples) < max {
		r.MalformedExamples = append(r.MalformedExamples, Problem{file, line, kind, detail})
	}
}

func (r *Report) addRedactions(c secrets.Counts) {
	for k, n := range c {
		r.Redactions[string(k)] += n
	}
}

// add merges o into r, keeping at most max malformed examples.
func (r *Report) add(o *Report, max int) {
	r.Sessions += o.Sessions
	r.Files += o.Files
	r.SubagentFiles += o.SubagentFiles
	r.Bytes += o.Bytes
	r.LinesIn += o.LinesIn
	r.RecordsOut += o.RecordsOut
	r.Conversations += o.Conversations
	r.SubagentConversations += o.SubagentConversations
	r.Turns += o.Turns
	r.TruncatedToolOutputs += o.TruncatedToolOutputs
	r.OmittedImages += o.OmittedImages
	for _, p := range []struct{ dst, src map[string]int }{
		{r.LinesByType, o.LinesByType}, {r.Dropped, o.Dropped}, {r.DroppedTurns, o.DroppedTurns},
		{r.Redactions, o.Redactions}, {r.Malformed, o.Malformed},
	} {
		for k, n := range p.src {
			p.dst[k] += n
		}
	}
	for _, e := range o.MalformedExamples {
		if len(r.MalformedExamples) >= max {
			break
		}
		r.MalformedExamples = append(r.MalformedExamples, e)
	}
}

func sum(m map[string]int) int {
	t := 0
	for _, n := range m {
		t += n
	}
	return t
}
