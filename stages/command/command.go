// Package command is the `command` stage kind: it runs any external
// program (a user's own script, say) with declared inputs, outputs,
// arguments and environment, so that users plug their own steps into a
// pipeline and still get caching.
package command

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/stages"
)

// Definition is the command stage kind.
var Definition = &stages.Definition{
	Name:    "command",
	Version: "1",
	Doc: `Run an external program

Runs program with args in the project folder. The program writes each
declared output to the path given by the placeholder {out.NAME} in args (or
the environment variable PIPE_OUT_NAME); a folder output must be created
by the program. The stage is cached like any other: its action key holds
the program's content digest, args, the declared environment, the values of
pass_env variables and the content of every path in inputs. Declare every
file the program reads (including the script itself) in inputs, or a change
to it will not re-run the stage.

Placeholders, replaced in args and env values: {out.NAME} (the path of
output NAME), {out} (the folder of all outputs), {tmp} (a private scratch
folder). The program also gets PIPE_STAGE, PIPE_OUT_DIR, PIPE_TMP_DIR,
PIPE_OUT_<NAME> for each output, PATH, HOME and TMPDIR, and nothing else of
the caller's environment unless named in pass_env.

On Ctrl-C the program's process group gets SIGTERM, then SIGKILL after
kill_grace. When the program fails, the last lines of its output are shown.

Parameters:

- program (string, required): the program to run, a name looked up in PATH
  or a path relative to the project folder.
- args (list of strings, default []): its arguments, placeholders replaced.
- outputs (map of name to "file" or "dir", required): the outputs; other
  stages use them as stage.command.<label>.<name>.
- inputs (list of paths or globs, default none): what the program reads;
  their content is part of the cache key.
- env (map of strings, default {}): environment variables to set.
- pass_env (list of strings, default []): caller environment variables to
  pass through; their values are part of the cache key.
- dir (string, default "."): working folder, relative to the project folder.
- timeout (duration, default "0s" = none): run time limit, e.g. "90s", "2h".
- kill_grace (duration, default "10s"): time between SIGTERM and SIGKILL
  when the run is cancelled.

Example:

    stage "command" "tokens" {
      program = "python3"
      args    = ["count.py", stage.command.clean.out.text, "{out.counts}"]
      inputs  = ["count.py", stage.command.clean.out.text]
      outputs = { counts = "file" }
    }`,
	Spec: hcldec.ObjectSpec{
		"program":    &hcldec.AttrSpec{Name: "program", Type: cty.String, Required: true},
		"args":       &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "args", Type: cty.List(cty.String)}, Default: &hcldec.LiteralSpec{Value: cty.ListValEmpty(cty.String)}},
		"outputs":    &hcldec.AttrSpec{Name: "outputs", Type: cty.Map(cty.String), Required: true},
		"env":        &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "env", Type: cty.Map(cty.String)}, Default: &hcldec.LiteralSpec{Value: cty.MapValEmpty(cty.String)}},
		"pass_env":   &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "pass_env", Type: cty.List(cty.String)}, Default: &hcldec.LiteralSpec{Value: cty.ListValEmpty(cty.String)}},
		"dir":        &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "dir", Type: cty.String}, Default: &hcldec.LiteralSpec{Value: cty.StringVal(".")}},
		"timeout":    &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "timeout", Type: cty.String}, Default: &hcldec.LiteralSpec{Value: cty.StringVal("0s")}},
		"kill_grace": &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "kill_grace", Type: cty.String}, Default: &hcldec.LiteralSpec{Value: cty.StringVal("10s")}},
	},
	Inputs: []stages.InputSpec{
		{Name: "inputs", List: true, Doc: "Files, folders and globs the program reads; their content is part of the cache key."},
	},
	OutputsOf: outputsOf,
	New:       newStage,
}

var nameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

func outputsOf(cfg cty.Value) []stages.OutputSpec {
	v := cfg.GetAttr("outputs")
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	var out []stages.OutputSpec
	for it := v.ElementIterator(); it.Next(); {
		k, kind := it.Element()
		o := stages.OutputSpec{Name: k.AsString(), Kind: stages.File}
		if !kind.IsNull() && kind.AsString() == "dir" {
			o.Kind = stages.Dir
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

type config struct {
	Program   string            `cty:"program"`
	Args      []string          `cty:"args"`
	Outputs   map[string]string `cty:"outputs"`
	Env       map[string]string `cty:"env"`
	PassEnv   []string          `cty:"pass_env"`
	Dir       string            `cty:"dir"`
	Timeout   string            `cty:"timeout"`
	KillGrace string            `cty:"kill_grace"`
}

// Stage is a configured command stage.
type Stage struct {
	cfg            config
	timeout, grace time.Duration
}

var _ stages.Keyer = (*Stage)(nil)

func newStage(v cty.Value) (stages.Stage, hcl.Diagnostics) {
	var cfg config
	if err := gocty.FromCtyValue(v, &cfg); err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid command stage", Detail: err.Error()}}
	}
	var diags hcl.Diagnostics
	bad := func(summary, detail string) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail})
	}
	if cfg.Program == "" {
		bad("Empty program", "Set program to the executable to run.")
	}
	if len(cfg.Outputs) == 0 {
		bad("No outputs", `Declare at least one output, e.g. outputs = { result = "file" }: a stage without outputs cannot be cached.`)
	}
	for name, kind := range cfg.Outputs {
		if !nameRE.MatchString(name) {
			bad("Invalid output name", fmt.Sprintf("Output name %q must start with a letter and contain only letters, digits and underscores.", name))
		}
		if kind != "file" && kind != "dir" {
			bad("Invalid output kind", fmt.Sprintf(`Output %q is %q; use "file" or "dir".`, name, kind))
		}
	}
	for k := range cfg.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			bad("Invalid environment variable name", fmt.Sprintf("%q is not a valid variable name.", k))
		}
	}
	s := &Stage{cfg: cfg}
	var err error
	if s.timeout, err = time.ParseDuration(cfg.Timeout); err != nil || s.timeout < 0 {
		bad("Invalid timeout", fmt.Sprintf("timeout %q is not a duration such as \"90s\" or \"2h\".", cfg.Timeout))
	}
	if s.grace, err = time.ParseDuration(cfg.KillGrace); err != nil || s.grace < 0 {
		bad("Invalid kill_grace", fmt.Sprintf("kill_grace %q is not a duration such as \"10s\".", cfg.KillGrace))
	}
	return s, diags
}

// program resolves the program path.
func (s *Stage) program(env *stages.Env) (string, error) {
	p := s.cfg.Program
	if strings.ContainsRune(p, filepath.Separator) {
		if !filepath.IsAbs(p) {
			p = filepath.Join(env.WorkDir, p)
		}
		return p, nil
	}
	lp, err := exec.LookPath(p)
	if err != nil {
		return "", fmt.Errorf("program %q not found in PATH", p)
	}
	return lp, nil
}

// KeyParts returns the program's content digest and the values of the
// pass_env variables.
func (s *Stage) KeyParts(ctx context.Context, env *stages.Env) (map[string]string, error) {
	p, err := s.program(env)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, fmt.Errorf("program %s: %v", s.cfg.Program, err)
	}
	d, _, err := artifacts.DigestFile(real)
	if err != nil {
		return nil, fmt.Errorf("program %s: %v", s.cfg.Program, err)
	}
	parts := map[string]string{"program " + s.cfg.Program: string(d)}
	for _, name := range s.cfg.PassEnv {
		v, ok := os.LookupEnv(name)
		if !ok {
			v = "\x00unset"
		}
		parts["environment variable "+name] = v
	}
	return parts, nil
}

var placeholderRE = regexp.MustCompile(`\{(out\.[A-Za-z][A-Za-z0-9_]*|out|tmp)\}`)

func (s *Stage) expand(str string, env *stages.Env) (string, error) {
	var err error
	out := placeholderRE.ReplaceAllStringFunc(str, func(m string) string {
		switch name := m[1 : len(m)-1]; {
		case name == "out":
			return env.OutDir
		case name == "tmp":
			return env.TempDir
		default:
			o := strings.TrimPrefix(name, "out.")
			if _, ok := s.cfg.Outputs[o]; !ok {
				err = fmt.Errorf("placeholder %s names no declared output", m)
			}
			return env.OutputPath(o)
		}
	})
	return out, err
}

// Run runs the program and waits for it.
func (s *Stage) Run(ctx context.Context, env *stages.Env) error {
	prog, err := s.program(env)
	if err != nil {
		return s.diag("Command not found", err.Error(), env)
	}
	args := make([]string, len(s.cfg.Args))
	for i, a := range s.cfg.Args {
		if args[i], err = s.expand(a, env); err != nil {
			return s.diag("Invalid placeholder", err.Error(), env)
		}
	}
	for name, kind := range s.cfg.Outputs {
		if kind == "dir" {
			// The folder exists so that the program can write into it.
			if err := os.MkdirAll(env.OutputPath(name), 0o777); err != nil {
				return err
			}
		}
	}
	vars := map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"), "TMPDIR": env.TempDir,
		"PIPE_STAGE": env.Stage, "PIPE_OUT_DIR": env.OutDir, "PIPE_TMP_DIR": env.TempDir,
	}
	for name := range s.cfg.Outputs {
		vars["PIPE_OUT_"+name] = env.OutputPath(name)
	}
	for _, name := range s.cfg.PassEnv {
		if v, ok := os.LookupEnv(name); ok {
			vars[name] = v
		}
	}
	for k, v := range s.cfg.Env {
		if vars[k], err = s.expand(v, env); err != nil {
			return s.diag("Invalid placeholder", err.Error(), env)
		}
	}
	return s.runProgram(ctx, env, prog, args, vars, nil)
}

// runProgram runs prog with args and the environment vars, sending its
// standard output to stdout (or, when nil, to the log with its standard
// error) and keeping the last lines for the error message.
func (s *Stage) runProgram(ctx context.Context, env *stages.Env, prog string, args []string, vars map[string]string, stdout io.Writer) error {
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, s.timeout, fmt.Errorf("command timed out after %s", s.timeout))
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = filepath.Join(env.WorkDir, s.cfg.Dir)
	for _, k := range sortedKeys(vars) {
		cmd.Env = append(cmd.Env, k+"="+vars[k])
	}
	cmd.SysProcAttr = procAttr()
	cmd.Cancel = func() error {
		// The whole process group, so that a shell's children stop too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = s.grace
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if stdout != nil {
		cmd.Stdout = stdout
	}
	tail := newTail(40, 8<<10)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		tail.copyLines(pr, env)
	}()
	// The parent-death signal (procAttr) is tied to this OS thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	pw.Close()
	if err == nil {
		err = cmd.Wait()
	}
	if cmd.Process != nil {
		// Children that outlive the program must not hold the pipe open.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// Read what is still in the pipe: closing it first lost the output
	// of a program that wrote and exited quickly. A process that left
	// the group can keep the write end open; stop waiting for it after
	// pipeDrain.
	select {
	case <-drained:
	case <-time.After(pipeDrain):
	}
	pr.Close()
	<-drained
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		detail := fmt.Sprintf("%s %s: %v.", s.cfg.Program, strings.Join(args, " "), err)
		if t := tail.String(); t != "" {
			detail += "\nLast lines of its output:\n" + t
		}
		return s.diag("Command failed", detail, env)
	}
	return nil
}

// pipeDrain bounds the wait for the output pipe to reach its end after the
// program's process group is gone.
const pipeDrain = 2 * time.Second

func (s *Stage) diag(summary, detail string, env *stages.Env) error {
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: env.Range.Ptr()}}
}

// tail keeps the last lines of a stream, bounded in lines and bytes.
type tail struct {
	mu       sync.Mutex
	lines    []string
	maxLines int
	maxBytes int
}

func newTail(lines, bytes int) *tail { return &tail{maxLines: lines, maxBytes: bytes} }

func (t *tail) copyLines(r io.Reader, env *stages.Env) {
	buf := make([]byte, 32<<10)
	var partial []byte
	for {
		n, err := r.Read(buf)
		partial = append(partial, buf[:n]...)
		for {
			i := bytes.IndexByte(partial, '\n')
			if i < 0 {
				break
			}
			t.add(string(partial[:i]), env)
			partial = partial[i+1:]
		}
		if len(partial) > t.maxBytes {
			t.add(string(partial), env)
			partial = nil
		}
		if err != nil {
			if len(partial) > 0 {
				t.add(string(partial), env)
			}
			return
		}
	}
}

func (t *tail) add(line string, env *stages.Env) {
	if env.Logger != nil {
		env.Logger.Info("output", "line", line)
	}
	if len(line) > t.maxBytes {
		line = line[:t.maxBytes] + "…"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.maxLines {
		t.lines = t.lines[len(t.lines)-t.maxLines:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
