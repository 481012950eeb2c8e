package command

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/pipeml/pipe/stages"
)

// EachDefinition is the command_each stage kind: a map stage that runs an
// external program once per input file and concatenates what it prints.
var EachDefinition = &stages.Definition{
	Name:    "command_each",
	Version: "1",
	Doc: `Run an external program once per input file

A map stage: the program runs once for every file under inputs (folders are
walked, globs expanded), and its standard output for that file becomes the
file's result. The output out is the concatenation of the results in
order of the files' keys (their paths relative to the project folder), so
it does not depend on parallelism. Each file's result is cached on its own:
when one file among thousands is added or changed, the program runs for
that file only; when a file disappears, its result leaves the output.

Placeholders, replaced in args and env values: {in} (the file's path),
{key} (its key), {tmp} (a private scratch folder). Standard error goes to
the log; the last lines are shown when the program fails.

Parameters:

- program (string, required): the program, a name looked up in PATH or a
  path relative to the project folder; its content digest is part of the
  cache key.
- args (list of strings, default ["{in}"]): its arguments.
- inputs (list of paths or globs, required): the files to process.
- shared (list of paths, default none): other files every run reads (the
  script, a rules file); a change to them re-runs every file.
- env (map of strings, default {}), pass_env (list of strings, default []),
  dir (string, default "."), timeout (per file, default "0s" = none),
  kill_grace (default "10s"): as for the command kind.

Example:

    stage "command_each" "tokens" {
      program = "python3"
      args    = ["count.py", "{in}"]
      shared  = ["count.py"]
      inputs  = ["logs"]
    }`,
	Spec: hcldec.ObjectSpec{
		"program":    &hcldec.AttrSpec{Name: "program", Type: cty.String, Required: true},
		"args":       &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "args", Type: cty.List(cty.String)}, Default: &hcldec.LiteralSpec{Value: cty.ListVal([]cty.Value{cty.StringVal("{in}")})}},
		"env":        &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "env", Type: cty.Map(cty.String)}, Default: &hcldec.LiteralSpec{Value: cty.MapValEmpty(cty.String)}},
		"pass_env":   &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "pass_env", Type: cty.List(cty.String)}, Default: &hcldec.LiteralSpec{Value: cty.ListValEmpty(cty.String)}},
		"dir":        &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "dir", Type: cty.String}, Default: &hcldec.LiteralSpec{Value: cty.StringVal(".")}},
		"timeout":    &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "timeout", Type: cty.String}, Default: &hcldec.LiteralSpec{Value: cty.StringVal("0s")}},
		"kill_grace": &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "kill_grace", Type: cty.String}, Default: &hcldec.LiteralSpec{Value: cty.StringVal("10s")}},
	},
	Inputs: []stages.InputSpec{
		{Name: "inputs", List: true, Required: true, Doc: "Files, folders and globs; one item per file."},
		{Name: "shared", List: true, Doc: "Files every item reads; part of every item's key."},
	},
	Outputs: []stages.OutputSpec{{Name: "out", Doc: "The results of every file, concatenated in key order."}},
	New:     newEach,
}

// Each is a configured command_each stage.
type Each struct {
	Stage
}

var (
	_ stages.Mapper = (*Each)(nil)
	_ stages.Keyer  = (*Each)(nil)
)

func newEach(v cty.Value) (stages.Stage, hcl.Diagnostics) {
	obj := map[string]cty.Value{}
	for k, val := range v.AsValueMap() {
		obj[k] = val
	}
	obj["outputs"] = cty.MapVal(map[string]cty.Value{"out": cty.StringVal("file")})
	st, diags := newStage(cty.ObjectVal(obj))
	if diags.HasErrors() {
		return nil, diags
	}
	return &Each{Stage: *st.(*Stage)}, nil
}

// Run maps every item without a cache (outside the engine).
func (e *Each) Run(ctx context.Context, env *stages.Env) error {
	return stages.RunMapper(ctx, env, e)
}

// Items lists every regular file under the inputs.
func (e *Each) Items(ctx context.Context, env *stages.Env) ([]stages.Item, error) {
	var items []stages.Item
	seen := map[string]bool{}
	for _, root := range env.Paths("inputs") {
		err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if de.IsDir() || seen[p] {
				return nil
			}
			if !de.Type().IsRegular() {
				// Follow links to files; skip anything else.
				fi, err := os.Stat(p)
				if err != nil || !fi.Mode().IsRegular() {
					return nil
				}
			}
			seen[p] = true
			key := p
			if rel, err := filepath.Rel(env.WorkDir, p); err == nil && !strings.HasPrefix(rel, "..") {
				key = filepath.ToSlash(rel)
			}
			items = append(items, stages.Item{Key: key, Files: []string{p}})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return items, nil
}

// Map runs the program for one file; its standard output is the result.
func (e *Each) Map(ctx context.Context, env *stages.Env, it stages.Item, w io.Writer) error {
	prog, err := e.program(env)
	if err != nil {
		return e.diag("Command not found", err.Error(), env)
	}
	repl := strings.NewReplacer("{in}", it.Files[0], "{key}", it.Key, "{tmp}", env.TempDir)
	args := make([]string, len(e.cfg.Args))
	for i, a := range e.cfg.Args {
		args[i] = repl.Replace(a)
	}
	vars := map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"), "TMPDIR": env.TempDir,
		"PIPE_STAGE": env.Stage, "PIPE_ITEM": it.Key, "PIPE_TMP_DIR": env.TempDir,
	}
	for _, name := range e.cfg.PassEnv {
		if v, ok := os.LookupEnv(name); ok {
			vars[name] = v
		}
	}
	for k, v := range e.cfg.Env {
		vars[k] = repl.Replace(v)
	}
	if err := e.runProgram(ctx, env, prog, args, vars, w); err != nil {
		return fmt.Errorf("%s: %w", it.Key, err)
	}
	return nil
}

// Reduce concatenates the results in key order.
func (e *Each) Reduce(ctx context.Context, env *stages.Env, results []stages.ItemResult) error {
	f, err := os.Create(env.OutputPath("out"))
	if err != nil {
		return err
	}
	for _, r := range results {
		rc, err := r.Open()
		if err != nil {
			f.Close()
			return err
		}
		_, err = io.Copy(f, rc)
		rc.Close()
		if err != nil {
			f.Close()
			return err
		}
	}
	env.Summary["files"] = len(results)
	return f.Close()
}
