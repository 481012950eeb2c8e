package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pipeml/pipe/engine"
)

// A stage whose JSON report depends on the file scores.txt, and a folder
// output holding a *report.json.
const metricsPipeline = `
stage "command" "score" {
  program = "sh"
  args    = ["-c", "printf '{\"loss\": {\"base\": %s, \"tuned\": %s}, \"steps\": 3, \"samples\": [1, 2]}' $(cat scores.txt) > {out.report} && mkdir -p {out.page} && printf '{\"acc\": %s}' $(cut -d' ' -f2 scores.txt) > {out.page}/eval_report.json"]
  inputs  = ["scores.txt"]
  outputs = { report = "file", page = "dir" }
}
`

func TestMetricsDiff(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"pipeline.hcl": metricsPipeline, "scores.txt": "2.5 2.0"})
	first, _ := runJSON(t, dir)
	writeFiles(t, dir, map[string]string{"scores.txt": "2.5 1.25"})
	second, _ := runJSON(t, dir)

	out, stderr, code := pipe(t, dir, "metrics", "diff", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Old, New string
		Metrics  []metricDiff
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Old != first.ID || got.New != second.ID {
		t.Errorf("compared %s with %s, want %s with %s", got.Old, got.New, first.ID, second.ID)
	}
	var lines []string
	for _, d := range got.Metrics {
		lines = append(lines, d.Stage+" "+d.File+" "+d.Name+" "+formatNumber(*d.Old)+" "+formatNumber(*d.New)+" "+formatNumber(*d.Change))
	}
	want := []string{
		"score page/eval_report.json acc 2 1.25 -0.75",
		"score report loss.tuned 2 1.25 -0.75",
	}
	if d := cmp.Diff(want, lines); d != "" {
		t.Errorf("diff (-want +got):\n%s", d)
	}

	// With --all the unchanged numbers are there too; arrays are not.
	out, _, _ = pipe(t, dir, "metrics", "diff", "--all", first.ID[:len(first.ID)-2], "~0")
	for _, want := range []string{"loss.base", "steps", "loss.tuned", "-0.75"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff --all lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "samples") {
		t.Errorf("diff --all lists an array:\n%s", out)
	}
	// show reads the old run's report from the cache, not the latest output.
	out, _, code = pipe(t, dir, "metrics", "show", "~1", "-md")
	if code != 0 || !strings.Contains(out, "| score | report | loss.tuned | 2 |") {
		t.Errorf("show ~1 (exit %d):\n%s", code, out)
	}
	if _, stderr, code := pipe(t, dir, "metrics", "show", "~5"); code != exitUsage || !strings.Contains(stderr, "only 2 runs") {
		t.Errorf("show ~5: exit %d, %s", code, stderr)
	}
}

func TestFindRun(t *testing.T) {
	runs := []*engine.RunRecord{{ID: "20260102-b"}, {ID: "20260101-a"}, {ID: "20251231-a"}}
	for _, c := range []struct{ ref, want, err string }{
		{"", "20260102-b", ""},
		{"~0", "20260102-b", ""},
		{"~2", "20251231-a", ""},
		{"20260101", "20260101-a", ""},
		{"2026010", "", "ambiguous"},
		{"~3", "", "only 3 runs"},
		{"~x", "", "whole number"},
		{"nope", "", "no run"},
	} {
		r, err := findRun(runs, c.ref)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want %q", c.ref, err, c.err)
		case c.err == "" && (err != nil || r.ID != c.want):
			t.Errorf("%q: %v %v, want %s", c.ref, r, err, c.want)
		}
	}
}
