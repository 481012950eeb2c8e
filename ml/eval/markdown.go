package eval

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The files Write puts next to eval_report.json.
const (
	MarkdownFile     = "report.md"
	LossChartFile    = "loss_by_source.png"
	FIMChartFile     = "fim_accuracy.png"
	LengthChartFile  = "fim_by_length.png"
	maxFIMSamplesMD  = 8
	maxAnswerRunesMD = 2000
)

// Write writes eval_report.json, report.md and the PNG charts into dir
// (which must exist). Everything written depends only on the report.
func (r *Report) Write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ReportFile), append(b, '\n'), 0o644); err != nil {
		return err
	}
	charts := r.charts()
	for _, name := range sortedKeys(charts) {
		if err := charts[name].writePNG(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, MarkdownFile), []byte(r.Markdown(charts)), 0o644)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// lossRows are the rows of the loss table and chart: everything, each
// record kind, then each source.
func (r *Report) lossRows() (labels []string, get []func(*LossTable) *LossStat) {
	base := r.Loss[r.Models[0]]
	if base == nil {
		return nil, nil
	}
	labels = append(labels, "all records")
	get = append(get, func(t *LossTable) *LossStat { return t.All })
	for _, k := range sortedKeys(base.ByKind) {
		labels = append(labels, "kind: "+k)
		get = append(get, func(t *LossTable) *LossStat { return t.ByKind[k] })
	}
	for _, s := range sortedKeys(base.BySource) {
		labels = append(labels, s)
		get = append(get, func(t *LossTable) *LossStat { return t.BySource[s] })
	}
	return labels, get
}

// charts returns the charts by file name.
func (r *Report) charts() map[string]*barChart {
	out := map[string]*barChart{}
	labels, get := r.lossRows()
	if len(labels) > 0 {
		c := &barChart{Title: "Eval loss by subset (token-weighted mean cross-entropy; lower is better)",
			XLabel: "loss (nats per loss token)", Categories: labels, Series: r.Models, Format: "%.3f"}
		for _, g := range get {
			var row []float64
			for _, m := range r.Models {
				s := g(r.Loss[m])
				if s == nil || s.Tokens == 0 {
					row = append(row, math.NaN())
				} else {
					row = append(row, s.Loss)
				}
			}
			c.Values = append(c.Values, row)
		}
		out[LossChartFile] = c
	}
	if r.FIM != nil && len(r.FIM.Scores) > 0 {
		c := &barChart{Title: fmt.Sprintf("FIM infilling on %d held-out examples (greedy; higher is better)", r.FIM.Examples),
			XLabel: "share of examples (edit similarity: mean)", Series: r.Models, Max: 1, Format: "%.3f",
			Categories: []string{"exact first line", "exact middle", "edit similarity"}}
		for k := range 3 {
			var row []float64
			for _, m := range r.Models {
				s := r.FIM.Scores[m]
				if s == nil {
					row = append(row, math.NaN())
					continue
				}
				row = append(row, []float64{s.ExactFirstLine, s.ExactMiddle, s.EditSimilarity}[k])
			}
			c.Values = append(c.Values, row)
		}
		out[FIMChartFile] = c

		l := &barChart{Title: "FIM edit similarity by length of the reference middle",
			XLabel: "mean edit similarity", Series: r.Models, Max: 1, Format: "%.3f"}
		base := r.FIM.Scores[r.Models[0]]
		for _, b := range r.FIM.LengthBuckets {
			if base == nil || base.ByLength[b] == nil {
				continue
			}
			l.Categories = append(l.Categories, fmt.Sprintf("%s tokens (n=%d)", bucketLabel(b), base.ByLength[b].Examples))
			var row []float64
			for _, m := range r.Models {
				if s := r.FIM.Scores[m]; s != nil && s.ByLength[b] != nil {
					row = append(row, s.ByLength[b].EditSimilarity)
				} else {
					row = append(row, math.NaN())
				}
			}
			l.Values = append(l.Values, row)
		}
		if len(l.Categories) > 0 {
			out[LengthChartFile] = l
		}
	}
	return out
}

// bucketLabel turns "017-032" into "17-32" and "257+" stays.
func bucketLabel(b string) string {
	lo, hi, ok := strings.Cut(b, "-")
	trim := func(s string) string {
		t := strings.TrimLeft(s, "0")
		if t == "" || t[0] == '+' {
			return "0" + t
		}
		return t
	}
	if !ok {
		return trim(b)
	}
	return trim(lo) + "-" + trim(hi)
}

func signed(v float64) string {
	if v > 0 {
		return fmt.Sprintf("+%.4f", v)
	}
	return fmt.Sprintf("%.4f", v)
}

// Markdown renders the report page. charts are the images Write writes
// next to it.
func (r *Report) Markdown(charts map[string]*barChart) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Evaluation: %s\n\n", strings.Join(r.Models, " vs "))
	p("Base model `%s`", r.Model)
	for _, m := range r.Models[1:] {
		a := r.Adapters[m]
		p("; **%s**: LoRA r=%d, alpha=%g on %s", m, a.Rank, a.Alpha, strings.Join(a.Targets, ", "))
	}
	p(". Backend `%s`, compute dtype %s, base weights %s.\n\n", r.Backend, r.DType, r.Quant)
	p("Eval split: %d records, %d evaluated (%d tokens, %d in the loss)", r.Data.Records, r.Data.Examples, r.Data.Tokens, r.Data.LossTokens)
	if r.Data.Truncated > 0 {
		p(", %d truncated to %d tokens", r.Data.Truncated, r.MaxLen)
	}
	for _, k := range sortedKeys(r.Data.Dropped) {
		p(", %d dropped (%s)", r.Data.Dropped[k], k)
	}
	p(".\n\n")

	labels, get := r.lossRows()
	if len(labels) > 0 {
		p("## Loss and perplexity\n\n")
		p("Token-weighted mean cross-entropy over the tokens training learns (assistant turns of chat records, the middle of FIM records), and its perplexity exp(loss).\n\n")
		p("| subset | records | loss tokens |")
		for _, m := range r.Models {
			p(" %s loss | %s ppl |", m, m)
		}
		for _, m := range r.Models[1:] {
			p(" Δ loss %s |", m)
		}
		p("\n|---|---:|---:|%s%s\n", strings.Repeat("---:|---:|", len(r.Models)), strings.Repeat("---:|", len(r.Models)-1))
		for i, lbl := range labels {
			base := get[i](r.Loss[r.Models[0]])
			p("| %s | %d | %d |", lbl, base.Examples, base.Tokens)
			for _, m := range r.Models {
				s := get[i](r.Loss[m])
				p(" %.4f | %.3f |", s.Loss, s.Perplexity)
			}
			for _, m := range r.Models[1:] {
				p(" %s |", signed(get[i](r.Loss[m]).Loss-base.Loss))
			}
			p("\n")
		}
		if charts[LossChartFile] != nil {
			p("\n![Eval loss by subset](%s)\n", LossChartFile)
		}
		p("\n")
	}

	if f := r.FIM; f != nil {
		p("## FIM infilling\n\n")
		p("%d held-out fill-in-the-middle examples, greedy decoding with the KV cache, at most %d new tokens, stopping at Qwen's end-of-text, end-of-turn and FIM tokens.", f.Examples, f.MaxNewTokens)
		for _, k := range sortedKeys(f.Skipped) {
			p(" %d skipped (%s).", f.Skipped[k], k)
		}
		p(" *Exact first line*: the first non-blank line equals the reference's (trailing spaces aside); *exact middle*: the whole completion equals the reference (line endings and trailing whitespace at the end aside); *edit similarity*: 1 − Levenshtein distance / the longer length, counted in characters (runes).\n\n")
		if len(f.Scores) > 0 {
			p("| metric |")
			for _, m := range r.Models {
				p(" %s |", m)
			}
			p("\n|---|%s\n", strings.Repeat("---:|", len(r.Models)))
			for _, row := range []struct {
				name string
				get  func(*FIMScores) string
			}{
				{"exact first line", func(s *FIMScores) string { return fmt.Sprintf("%.1f%%", 100*s.ExactFirstLine) }},
				{"exact middle", func(s *FIMScores) string { return fmt.Sprintf("%.1f%%", 100*s.ExactMiddle) }},
				{"edit similarity", func(s *FIMScores) string { return fmt.Sprintf("%.3f", s.EditSimilarity) }},
				{"stopped before the limit", func(s *FIMScores) string { return fmt.Sprintf("%.1f%%", 100*s.Stopped) }},
				{"generated tokens", func(s *FIMScores) string { return fmt.Sprint(s.GeneratedTokens) }},
			} {
				p("| %s |", row.name)
				for _, m := range r.Models {
					p(" %s |", row.get(f.Scores[m]))
				}
				p("\n")
			}
			if charts[FIMChartFile] != nil {
				p("\n![FIM accuracy](%s)\n", FIMChartFile)
			}
			base := f.Scores[r.Models[0]]
			p("\n### By length of the reference middle\n\n| middle tokens | examples |")
			for _, m := range r.Models {
				p(" %s exact | %s edit sim |", m, m)
			}
			p("\n|---|---:|%s\n", strings.Repeat("---:|---:|", len(r.Models)))
			for _, bk := range f.LengthBuckets {
				if base.ByLength[bk] == nil {
					continue
				}
				p("| %s | %d |", bucketLabel(bk), base.ByLength[bk].Examples)
				for _, m := range r.Models {
					s := f.Scores[m].ByLength[bk]
					p(" %.1f%% | %.3f |", 100*s.ExactMiddle, s.EditSimilarity)
				}
				p("\n")
			}
			if charts[LengthChartFile] != nil {
				p("\n![FIM accuracy by length](%s)\n", LengthChartFile)
			}
			if len(base.BySource) > 1 {
				p("\n### By source\n\n| source | examples |")
				for _, m := range r.Models {
					p(" %s exact | %s edit sim |", m, m)
				}
				p("\n|---|---:|%s\n", strings.Repeat("---:|---:|", len(r.Models)))
				for _, src := range sortedKeys(base.BySource) {
					p("| %s | %d |", src, base.BySource[src].Examples)
					for _, m := range r.Models {
						s := f.Scores[m].BySource[src]
						p(" %.1f%% | %.3f |", 100*s.ExactMiddle, s.EditSimilarity)
					}
					p("\n")
				}
			}
			p("\n### Examples\n\nThe first %d tasks; all of them are in %s.\n\n", min(maxFIMSamplesMD, len(f.Samples)), ReportFile)
			for i, s := range f.Samples[:min(maxFIMSamplesMD, len(f.Samples))] {
				p("**%d.** `%s` (%d middle tokens)\n\n", i+1, s.Where, s.MiddleTokens)
				sideBySide(&b, append([]string{"reference"}, r.Models...), func(col string) (string, string) {
					if col == "reference" {
						return s.Reference, ""
					}
					res := s.Results[col]
					return res.Output, fmt.Sprintf("edit sim %.3f%s", res.EditSimilarity, map[bool]string{true: ", exact", false: ""}[res.ExactMiddle])
				})
			}
		}
	}

	if len(r.Chat) > 0 {
		p("## Chat samples\n\nGreedy answers to the same prompts.\n\n")
		for i, c := range r.Chat {
			p("### Prompt %d\n\n", i+1)
			if c.Where != "" {
				p("From `%s`.", c.Where)
			}
			if c.System != "" {
				p(" System: %s", quoteInline(c.System, 300))
			}
			p("\n\n%s\n\n", blockquote(c.Prompt, maxAnswerRunesMD))
			sideBySide(&b, r.Models, func(col string) (string, string) { return c.Answers[col], "" })
		}
	}
	return b.String()
}

// sideBySide writes an HTML table with one column per name, each cell a
// <pre> block (Markdown renderers such as GitHub's show it as is).
func sideBySide(b *strings.Builder, cols []string, cell func(col string) (text, note string)) {
	b.WriteString("<table>\n<tr>")
	for _, c := range cols {
		fmt.Fprintf(b, "<th>%s</th>", html.EscapeString(c))
	}
	b.WriteString("</tr>\n<tr>")
	for _, c := range cols {
		text, note := cell(c)
		if strings.TrimSpace(text) == "" {
			note = strings.TrimPrefix(note+"; no text", "; ")
		}
		b.WriteString("<td valign=\"top\">")
		if note != "" {
			fmt.Fprintf(b, "<i>%s</i>", html.EscapeString(note))
		}
		fmt.Fprintf(b, "<pre>%s</pre></td>", html.EscapeString(truncRunes(text, maxAnswerRunesMD)))
	}
	b.WriteString("</tr>\n</table>\n\n")
}

func truncRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "\n[… cut]"
}

func blockquote(s string, n int) string {
	lines := strings.Split(truncRunes(s, n), "\n")
	for i, l := range lines {
		lines[i] = "> " + l
	}
	return strings.Join(lines, "\n")
}

func quoteInline(s string, n int) string {
	return strings.ReplaceAll(truncRunes(s, n), "\n", " ")
}
