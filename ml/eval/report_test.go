package eval

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// syntheticReport is a hand-made report with three models, several
// sources (one with a long name) and a model missing a source.
func syntheticReport() *Report {
	stat := func(loss float64, tokens int) *LossStat {
		s := &LossStat{sum: loss * float64(tokens)}
		s.Tokens, s.Examples = tokens, 3
		s.finish()
		return s
	}
	table := func(shift float64) *LossTable {
		t := newLossTable()
		t.All = stat(2+shift, 300)
		t.ByKind[KindChat] = stat(2.5+shift, 200)
		t.ByKind[KindFIM] = stat(1+shift, 100)
		t.BySource["claude_logs"] = stat(2.5+shift, 200)
		t.BySource["fim:a-repository-with-a-very-long-name-indeed"] = stat(1+shift, 100)
		return t
	}
	fim := func(acc float64) *FIMScores {
		s := &FIMScores{Examples: 10, ExactFirstLine: acc, ExactMiddle: acc / 2, EditSimilarity: 0.5 + acc/2, Stopped: 1,
			ByLength: map[string]*FIMScores{}, BySource: map[string]*FIMScores{}}
		for i, b := range []string{lengthBucket(10), lengthBucket(40), lengthBucket(300)} {
			s.ByLength[b] = &FIMScores{Examples: 3 + i, ExactMiddle: acc / float64(i+1), EditSimilarity: 0.9 - 0.2*float64(i)}
		}
		s.BySource["fim:x"] = &FIMScores{Examples: 10, ExactMiddle: acc / 2, EditSimilarity: 0.5 + acc/2}
		return s
	}
	return &Report{
		Model: "tiny", Backend: "go", DType: "Float32", Quant: "none", Models: []string{"base", "tuned1", "tuned2"},
		Adapters: map[string]AdapterInfo{"tuned1": {Rank: 8, Alpha: 16, Targets: []string{"q_proj"}}, "tuned2": {Rank: 4, Alpha: 8, Targets: []string{"v_proj"}}},
		Data:     DataStats{Records: 7, Examples: 6, Truncated: 1, Dropped: map[string]int{"no_loss_tokens": 1}, Tokens: 400, LossTokens: 300},
		MaxLen:   128,
		Loss:     map[string]*LossTable{"base": table(0), "tuned1": table(-0.5), "tuned2": table(0.25)},
		FIM: &FIMReport{Examples: 10, MaxNewTokens: 16, LengthBuckets: allLengthBuckets(), Skipped: map[string]int{"too_long": 2},
			Scores: map[string]*FIMScores{"base": fim(0.1), "tuned1": fim(0.6), "tuned2": fim(0.3)},
			Samples: []FIMSample{{Where: "eval.jsonl:3", Source: "fim:x", MiddleTokens: 5, Reference: "\treturn <nil>\n",
				Results: map[string]FIMResult{"base": {Output: "x"}, "tuned1": {Output: "\treturn <nil>\n", ExactMiddle: true, EditSimilarity: 1}, "tuned2": {Output: "y"}}}}},
		Chat: []ChatSample{{Where: "eval.jsonl:1", System: "Be brief.", Prompt: "Hi\nthere", Answers: map[string]string{"base": "a & b", "tuned1": "<ok>", "tuned2": ""}}},
	}
}

func TestLengthBucket(t *testing.T) {
	for n, want := range map[int]string{1: "001-016", 16: "001-016", 17: "017-032", 256: "129-256", 257: "257+", 5000: "257+"} {
		if got := lengthBucket(n); got != want {
			t.Errorf("lengthBucket(%d) = %s, want %s", n, got, want)
		}
	}
	if got := bucketLabel("017-032") + " " + bucketLabel("257+"); got != "17-32 257+" {
		t.Errorf("labels %q", got)
	}
}

// TestReportRenders writes a synthetic three-model report and checks the
// Markdown tables, the HTML escaping of samples and the charts.
func TestReportRenders(t *testing.T) {
	rep := syntheticReport()
	out := t.TempDir()
	if err := rep.Write(out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# Evaluation: base vs tuned1 vs tuned2",
		"| subset | records | loss tokens | base loss | base ppl | tuned1 loss | tuned1 ppl | tuned2 loss | tuned2 ppl | Δ loss tuned1 | Δ loss tuned2 |",
		"| kind: fim | 3 | 100 | 1.0000 | 2.718 | 0.5000 | 1.649 | 1.2500 | 3.490 | -0.5000 | +0.2500 |",
		"| exact first line | 10.0% | 60.0% | 30.0% |",
		"| 257+ | 5 |",
		" 2 skipped (too_long).",
		"<pre>\treturn &lt;nil&gt;\n</pre>",
		"<pre>a &amp; b</pre>",
		"<i>no text</i><pre></pre>",
		"> Hi\n> there",
		", 1 truncated to 128 tokens, 1 dropped (no_loss_tokens).",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	// Each chart is a PNG with a row of bars per category.
	for name, rows := range map[string]int{LossChartFile: 5, FIMChartFile: 3, LengthChartFile: 3} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		want := 64 + rows*(3*barH+groupGap) + 52
		if h := img.Bounds().Dy(); h != want {
			t.Errorf("%s: height %d, want %d", name, h, want)
		}
		// The third series' colour appears (its bars are drawn).
		found := false
		c := seriesColors[2]
		for y := 0; y < img.Bounds().Dy() && !found; y++ {
			for x := 0; x < img.Bounds().Dx(); x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				if uint8(r>>8) == c.R && uint8(g>>8) == c.G && uint8(bl>>8) == c.B {
					found = true
					break
				}
			}
		}
		if !found {
			t.Errorf("%s has no bar of the third model", name)
		}
	}
	// Writing again gives the same bytes.
	out2 := t.TempDir()
	if err := rep.Write(out2); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ReportFile, MarkdownFile, LossChartFile, FIMChartFile, LengthChartFile} {
		a, _ := os.ReadFile(filepath.Join(out, f))
		b, _ := os.ReadFile(filepath.Join(out2, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two writes", f)
		}
	}
	if math.Abs(rep.Loss["tuned1"].All.Perplexity-math.Exp(1.5)) > 1e-9 {
		t.Errorf("perplexity %v", rep.Loss["tuned1"].All.Perplexity)
	}
}
