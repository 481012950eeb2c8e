package engine

import (
	"context"
	"fmt"
	"testing"
)

// benchProject is a pipeline whose map stage reads n input files, already
// run once.
func benchProject(b *testing.B, n int) *project {
	b.Helper()
	p := newProject(b, map[string]string{"pipeline.hcl": `
stage "lines" "count" {
  dir = "logs"
}

stage "concat" "after" {
  srcs = [stage.lines.count.out]
}
`})
	for i := range n {
		p.write(fmt.Sprintf("logs/%03d/%d.log", i%100, i), fmt.Sprintf("line %d\nanother\n", i))
	}
	if _, err := p.run(context.Background(), Options{}); err != nil {
		b.Fatal(err)
	}
	return p
}

// runOnce does what `pipe run` does: load and plan the pipeline, take the
// lock, run.
func (p *project) runOnce(b *testing.B) *RunRecord {
	rec, err := p.run(context.Background(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	return rec
}

// BenchmarkNoopRun10k: a no-op re-run of a pipeline whose map stage reads
// 10,000 input files (goal: under 100 ms).
func BenchmarkNoopRun10k(b *testing.B) {
	p := benchProject(b, 10_000)
	p.runOnce(b) // settle the stat memo
	for b.Loop() {
		rec := p.runOnce(b)
		if c := rec.Counts(); c[StatusExecuted] != 0 {
			b.Fatalf("no-op run executed %d stages", c[StatusExecuted])
		}
	}
}

// BenchmarkOneNewFile10k: the same with one new file among the 10,000
// each time (goal: under 150 ms plus that file's work). Exactly one item
// is mapped per run.
func BenchmarkOneNewFile10k(b *testing.B) {
	p := benchProject(b, 10_000)
	p.runOnce(b)
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		p.write(fmt.Sprintf("logs/new/%d.log", i), "new\n")
		b.StartTimer()
		rec := p.runOnce(b)
		if it := rec.Stages[0].Items; it == nil || it.Processed != 1 {
			b.Fatalf("items = %+v, want exactly one processed", it)
		}
	}
}
