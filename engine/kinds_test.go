package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/pipeml/pipe/stages"
)

// Test-only stage kinds. Each test builds its own registry from them.

// counters counts what the test kinds did; each registry has its own.
type counters struct {
	runs atomic.Int64 // Run calls of non-map kinds
	maps atomic.Int64 // Map calls
}

func strDefault(name, def string) hcldec.Spec {
	return &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: name, Type: cty.String}, Default: &hcldec.LiteralSpec{Value: cty.StringVal(def)}}
}

// testKinds returns the test kinds:
//
//	concat: inputs srcs (list), param suffix; output out = the files' bytes + suffix.
//	fail:   param message; always fails.
//	wait:   waits until its context is done or release is closed; output out.
//	lines:  a Mapper over the files under dir: one "<prefix><key> <lines>" line each; output out.
//	tree:   writes a folder output with a file per input file.
func testKinds(c *counters, release <-chan struct{}, running *atomic.Int64, peak *atomic.Int64) []*stages.Definition {
	return []*stages.Definition{
		{
			Name: "concat", Version: "1", Doc: "Concatenate files",
			Spec:    hcldec.ObjectSpec{"suffix": strDefault("suffix", "")},
			Inputs:  []stages.InputSpec{{Name: "srcs", List: true}},
			Outputs: []stages.OutputSpec{{Name: "out"}},
			New: func(v cty.Value) (stages.Stage, hcl.Diagnostics) {
				if v.GetAttr("suffix").AsString() == "bad" {
					// Kinds see values, not source: the engine places this.
					return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid suffix", Detail: "The suffix must not be \"bad\"."}}
				}
				return stageFunc(func(ctx context.Context, env *stages.Env) error {
					c.runs.Add(1)
					var b []byte
					for _, p := range env.Paths("srcs") {
						d, err := os.ReadFile(p)
						if err != nil {
							return err
						}
						b = append(b, d...)
					}
					b = append(b, v.GetAttr("suffix").AsString()...)
					return os.WriteFile(env.OutputPath("out"), b, 0o644)
				}), nil
			},
		},
		{
			Name: "fail", Version: "1", Doc: "Fail",
			Spec:    hcldec.ObjectSpec{"message": strDefault("message", "boom")},
			Outputs: []stages.OutputSpec{{Name: "out"}},
			New: func(v cty.Value) (stages.Stage, hcl.Diagnostics) {
				return stageFunc(func(ctx context.Context, env *stages.Env) error {
					c.runs.Add(1)
					return errors.New(v.GetAttr("message").AsString())
				}), nil
			},
		},
		{
			Name: "wait", Version: "1", Doc: "Wait",
			Spec:    hcldec.ObjectSpec{"tag": strDefault("tag", "")},
			Inputs:  []stages.InputSpec{{Name: "after", List: true}},
			Outputs: []stages.OutputSpec{{Name: "out"}},
			New: func(v cty.Value) (stages.Stage, hcl.Diagnostics) {
				return stageFunc(func(ctx context.Context, env *stages.Env) error {
					c.runs.Add(1)
					if running != nil {
						n := running.Add(1)
						defer running.Add(-1)
						for {
							p := peak.Load()
							if n <= p || peak.CompareAndSwap(p, n) {
								break
							}
						}
					}
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-release:
					}
					return os.WriteFile(env.OutputPath("out"), []byte(env.Stage), 0o644)
				}), nil
			},
		},
		{
			Name: "lines", Version: "1", Doc: "Count lines per file",
			Spec:    hcldec.ObjectSpec{"prefix": strDefault("prefix", "")},
			Inputs:  []stages.InputSpec{{Name: "dir", Required: true}, {Name: "rules"}},
			Outputs: []stages.OutputSpec{{Name: "out"}},
			New: func(v cty.Value) (stages.Stage, hcl.Diagnostics) {
				return &linesStage{prefix: v.GetAttr("prefix").AsString(), c: c}, nil
			},
		},
		{
			Name: "tree", Version: "1", Doc: "Folder output",
			Inputs:  []stages.InputSpec{{Name: "srcs", List: true}},
			Outputs: []stages.OutputSpec{{Name: "dir", Kind: stages.Dir}},
			New: func(v cty.Value) (stages.Stage, hcl.Diagnostics) {
				return stageFunc(func(ctx context.Context, env *stages.Env) error {
					c.runs.Add(1)
					out := env.OutputPath("dir")
					for i, p := range env.Paths("srcs") {
						b, err := os.ReadFile(p)
						if err != nil {
							return err
						}
						dst := filepath.Join(out, fmt.Sprintf("sub/%d.txt", i))
						os.MkdirAll(filepath.Dir(dst), 0o777)
						if err := os.WriteFile(dst, b, 0o644); err != nil {
							return err
						}
					}
					return os.MkdirAll(out, 0o777)
				}), nil
			},
		},
	}
}

type stageFunc func(ctx context.Context, env *stages.Env) error

func (f stageFunc) Run(ctx context.Context, env *stages.Env) error { return f(ctx, env) }

// linesStage is a test Mapper: one item per file under dir.
type linesStage struct {
	prefix string
	c      *counters
}

func (s *linesStage) Run(ctx context.Context, env *stages.Env) error {
	return stages.RunMapper(ctx, env, s)
}

func (s *linesStage) Items(ctx context.Context, env *stages.Env) ([]stages.Item, error) {
	root := env.Paths("dir")[0]
	var items []stages.Item
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		items = append(items, stages.Item{Key: filepath.ToSlash(rel), Files: []string{p}})
		return nil
	})
	return items, err
}

func (s *linesStage) Map(ctx context.Context, env *stages.Env, it stages.Item, w io.Writer) error {
	s.c.maps.Add(1)
	b, err := os.ReadFile(it.Files[0])
	if err != nil {
		return err
	}
	if strings.Contains(string(b), "MAPFAIL") {
		return errors.New("cannot map " + it.Key)
	}
	rules := ""
	if p := env.Paths("rules"); len(p) > 0 {
		r, err := os.ReadFile(p[0])
		if err != nil {
			return err
		}
		rules = strings.TrimSpace(string(r))
	}
	_, err = fmt.Fprintf(w, "%s%s%s %d\n", s.prefix, rules, it.Key, strings.Count(string(b), "\n"))
	return err
}

func (s *linesStage) Reduce(ctx context.Context, env *stages.Env, results []stages.ItemResult) error {
	f, err := os.Create(env.OutputPath("out"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for _, r := range results {
		rc, err := r.Open()
		if err != nil {
			return err
		}
		_, err = io.Copy(w, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	env.Summary["files"] = len(results)
	return w.Flush()
}
