package engine

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/tools/txtar"

	"github.com/pipeml/pipe/engine/config"
	"github.com/pipeml/pipe/stages"
)

var update = flag.Bool("update", false, "rewrite the golden sections of testdata/scenarios/*.txtar")

// project is a pipeline in a temporary folder, for tests.
type project struct {
	t    testing.TB
	dir  string
	vars []string
	reg  *stages.Registry
	c    *counters
	ws   *Workspace
}

func newProject(t testing.TB, files map[string]string, defs ...*stages.Definition) *project {
	t.Helper()
	p := &project{t: t, dir: t.TempDir(), c: &counters{}}
	for name, content := range files {
		p.write(name, content)
	}
	if len(defs) == 0 {
		defs = testKinds(p.c, nil, nil, nil)
	}
	reg, err := stages.NewRegistry(defs...)
	if err != nil {
		t.Fatal(err)
	}
	p.reg = reg
	return p
}

func (p *project) write(name, content string) {
	p.t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// plan loads and plans the pipeline, failing the test on diagnostics.
func (p *project) plan() *Plan {
	p.t.Helper()
	pl, diags := p.tryPlan()
	if diags.HasErrors() {
		p.t.Fatalf("plan: %s", diags.Error())
	}
	return pl
}

func (p *project) tryPlan() (*Plan, hcl.Diagnostics) {
	cfg, diags := config.Load(filepath.Join(p.dir, "pipeline.hcl"), config.Options{Vars: p.vars, Getenv: func(string) (string, bool) { return "", false }})
	if diags.HasErrors() {
		return nil, diags
	}
	if p.ws == nil {
		ws, err := OpenWorkspace(filepath.Join(p.dir, ".pipe"))
		if err != nil {
			p.t.Fatal(err)
		}
		p.ws = ws
	}
	// A fresh Workspace value per plan, as each pipe command has.
	ws, err := OpenWorkspace(p.ws.Dir)
	if err != nil {
		p.t.Fatal(err)
	}
	pl, pdiags := NewPlan(cfg, p.reg, ws)
	return pl, append(diags, pdiags...)
}

func (p *project) run(ctx context.Context, opts Options, targets ...string) (*RunRecord, error) {
	p.t.Helper()
	pl := p.plan()
	if err := pl.Workspace.Lock(ctx, true, nil); err != nil {
		p.t.Fatal(err)
	}
	defer pl.Workspace.Unlock()
	if opts.Parallelism == 0 {
		opts.Parallelism = 4
	}
	return pl.Run(ctx, targets, opts)
}

func statusLine(r *StageResult) string {
	s := fmt.Sprintf("%s: %s", r.Name, r.Status)
	if r.Items != nil {
		s += fmt.Sprintf(" (items %d new, %d reused)", r.Items.Processed, r.Items.Reused)
	}
	return s
}

// objectOf returns the object path behind a stage's output.
func (p *project) objectOf(stage, output string) string {
	st, err := p.ws.State()
	if err != nil {
		p.t.Fatal(err)
	}
	s := st[stage]
	if s == nil {
		p.t.Fatalf("stage %s has no state", stage)
	}
	for _, o := range s.Outputs {
		if o.Name == output {
			return p.ws.Cache.ObjectPath(o.Digest)
		}
	}
	p.t.Fatalf("stage %s has no output %s", stage, output)
	return ""
}

func corruptFile(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		b = []byte{0}
	} else {
		b[0] ^= 0xff
	}
	os.Chmod(path, 0o644)
	if err := os.WriteFile(path, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

// TestScenarios runs every testdata/scenarios/*.txtar: the archive holds
// pipeline.hcl, input files and a "steps" file; the transcript of the
// steps must equal the "golden" section (go test -update rewrites it).
//
// Steps: run [stage...] [--force=stage] | plan | write <path> <text> |
// rm <path> | var <name=value> | corrupt <stage> <output> |
// corrupt-items <stage> <n> | rmobj <stage> <output> | cat <stage> <output>.
// In <text>, \n is a newline.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			inputs := map[string]string{}
			var steps, golden string
			goldenIdx := -1
			for i, f := range ar.Files {
				switch f.Name {
				case "steps":
					steps = string(f.Data)
				case "golden":
					golden, goldenIdx = string(f.Data), i
				default:
					inputs[f.Name] = string(f.Data)
				}
			}
			p := newProject(t, inputs)
			got := p.script(t, steps)
			if *update {
				if goldenIdx < 0 {
					ar.Files = append(ar.Files, txtar.File{Name: "golden"})
					goldenIdx = len(ar.Files) - 1
				}
				ar.Files[goldenIdx].Data = []byte(got)
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != golden {
				t.Errorf("transcript differs (-want +got):\n%s", lineDiff(golden, got))
			}
		})
	}
}

func (p *project) script(t *testing.T, steps string) string {
	var out bytes.Buffer
	ctx := t.Context()
	for _, line := range strings.Split(steps, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fmt.Fprintf(&out, "> %s\n", line)
		f := strings.Fields(line)
		switch f[0] {
		case "run":
			opts := Options{Force: map[string]bool{}}
			var targets []string
			for _, a := range f[1:] {
				if s, ok := strings.CutPrefix(a, "--force="); ok {
					opts.Force[s] = true
				} else {
					targets = append(targets, a)
				}
			}
			rec, err := p.run(ctx, opts, targets...)
			if rec != nil {
				for _, s := range rec.Stages {
					fmt.Fprintln(&out, statusLine(s))
					if s.Error != "" {
						fmt.Fprintf(&out, "  error: %s\n", firstLineOf(s.Error))
					}
				}
			}
			if err != nil {
				fmt.Fprintf(&out, "error: %v\n", err)
			}
		case "plan":
			pl := p.plan()
			rs, err := pl.Explain(ctx, nil, Options{Parallelism: 2})
			if err != nil {
				fmt.Fprintf(&out, "error: %v\n", err)
			}
			for _, r := range rs {
				fmt.Fprintf(&out, "%s: %s: %s\n", r.Name, r.Status, strings.Join(r.Why, "; "))
			}
		case "write":
			text := strings.ReplaceAll(strings.Join(f[2:], " "), `\n`, "\n")
			p.write(f[1], text)
		case "rm":
			if err := os.Remove(filepath.Join(p.dir, f[1])); err != nil {
				t.Fatal(err)
			}
		case "var":
			p.vars = append(p.vars, f[1])
		case "corrupt":
			corruptFile(t, p.objectOf(f[1], f[2]))
		case "rmobj":
			if err := os.Remove(p.objectOf(f[1], f[2])); err != nil {
				t.Fatal(err)
			}
		case "corrupt-items":
			n := 0
			fmt.Sscan(f[2], &n)
			pl := p.plan()
			node := pl.Nodes[f[1]]
			ix := p.ws.Cache.ItemIndex(node.Def.Name + "\x00" + node.Name)
			// Results stored as objects are corrupted in place; inline
			// results are corrupted inside the index file, keeping their
			// length.
			var objs []string
			for _, r := range ix.Results() {
				if r.Data == nil {
					objs = append(objs, p.ws.Cache.ObjectPath(r.Digest))
				}
			}
			sort.Strings(objs)
			for _, o := range objs[:min(n, len(objs))] {
				corruptFile(t, o)
			}
			if k := n - len(objs); k > 0 {
				b, err := os.ReadFile(ix.Path())
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.Split(string(b), "\n")
				for i := range lines {
					f := strings.Fields(lines[i])
					if k == 0 || len(f) != 4 {
						continue
					}
					data := []byte(f[3])
					if data[0] == 'A' {
						data[0] = 'B'
					} else {
						data[0] = 'A'
					}
					f[3] = string(data)
					lines[i] = strings.Join(f, " ")
					k--
				}
				if err := os.WriteFile(ix.Path(), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		case "cat":
			b, err := os.ReadFile(p.ws.OutPath(f[1], f[2]))
			if err != nil {
				fmt.Fprintf(&out, "error: %v\n", err)
			}
			out.Write(b)
			if len(b) > 0 && b[len(b)-1] != '\n' {
				out.WriteString("\n")
			}
		default:
			t.Fatalf("unknown step %q", line)
		}
	}
	return out.String()
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// lineDiff is a small line diff for failure messages.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a == c {
			fmt.Fprintf(&b, "  %s\n", a)
		} else {
			fmt.Fprintf(&b, "- %s\n+ %s\n", a, c)
		}
	}
	return b.String()
}
