package engine

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/pipeml/pipe/stages"
)

// TestCacheVerify: with Verify (PIPE_CACHEVERIFY=1) cached stages run again
// and a stage whose output differs from the cached one fails.
func TestCacheVerify(t *testing.T) {
	var calls atomic.Int64
	flaky := &stages.Definition{
		Name: "flaky", Version: "1", Doc: "Different output every run",
		Outputs: []stages.OutputSpec{{Name: "out"}},
		New: func(cty.Value) (stages.Stage, hcl.Diagnostics) {
			return stageFunc(func(ctx context.Context, env *stages.Env) error {
				n := calls.Add(1)
				return os.WriteFile(env.OutputPath("out"), []byte{byte(n)}, 0o644)
			}), nil
		},
	}
	c := &counters{}
	p := newProject(t, map[string]string{"pipeline.hcl": `
stage "flaky" "f" {}
stage "concat" "steady" {
  srcs = ["in.txt"]
}
`, "in.txt": "x"}, append(testKinds(c, nil, nil, nil), flaky)...)
	if _, err := p.run(t.Context(), Options{}); err != nil {
		t.Fatal(err)
	}
	rec, err := p.run(t.Context(), Options{Verify: true})
	if err == nil {
		t.Fatal("verify passed a non-deterministic stage")
	}
	got := map[string]*StageResult{}
	for _, s := range rec.Stages {
		got[s.Name] = s
	}
	if got["f"].Status != StatusFailed || !strings.Contains(got["f"].Error, "not deterministic") {
		t.Errorf("flaky: %s %s", got["f"].Status, got["f"].Error)
	}
	if got["steady"].Status != StatusExecuted {
		t.Errorf("steady: %s, want executed (re-run and matching)", got["steady"].Status)
	}
}

// TestGC: gc keeps what the current stages use and removes the rest.
func TestGC(t *testing.T) {
	p := newProject(t, map[string]string{"pipeline.hcl": `
variable "s" {
  default = "1"
}
stage "concat" "a" {
  srcs   = ["in.txt"]
  suffix = var.s
}
stage "lines" "l" {
  dir = "logs"
}
`, "in.txt": "x", "logs/a.log": "a\n"})
	ctx := t.Context()
	if _, err := p.run(ctx, Options{}); err != nil {
		t.Fatal(err)
	}
	p.vars = []string{"s=2"}
	if _, err := p.run(ctx, Options{}); err != nil {
		t.Fatal(err)
	}
	pl := p.plan()
	st, err := GC(pl, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.ActionsRemoved != 1 || st.ObjectsRemoved < 1 || st.BytesFreed == 0 {
		t.Errorf("gc stats = %+v, want the old action of a and its output removed", st)
	}
	rec, err := p.run(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c := rec.Counts(); c[StatusCached] != 2 {
		t.Errorf("after gc: %v, want both stages cached", c)
	}
	// The old parameter's result is gone: going back runs again.
	p.vars = []string{"s=1"}
	rec, _ = p.run(ctx, Options{})
	if rec.Stages[0].Status != StatusExecuted {
		t.Errorf("old result after gc: %s, want executed", rec.Stages[0].Status)
	}
}
