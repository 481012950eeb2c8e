// Command pipe runs ML data pipelines declared in pipeline.hcl: it
// resolves the stage graph, content-hashes every input, parameter and
// output, and re-runs only what changed.
//
// Usage: pipe <command> [flags] [args]. Run `pipe help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/term"

	"github.com/pipeml/pipe/engine"
	"github.com/pipeml/pipe/engine/config"
)

// Exit codes.
const (
	exitOK        = 0
	exitFailed    = 1 // a stage failed
	exitUsage     = 2 // bad flags, configuration errors
	exitLocked    = 3 // the workspace is locked (--no-wait)
	exitCancelled = 130
)

// exitError carries an exit code to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

const usage = `pipe runs the stages of pipeline.hcl, re-running only what changed.

Usage:
  pipe run    [flags] [stage...]   run the stages (default all) and what they need
  pipe plan   [flags] [stage...]   say what run would do, and why, without running
  pipe show   [flags] stage        a stage's outputs, digests and inputs (lineage)
  pipe log    [flags]              list past runs
  pipe metrics show|diff [run...]  the numbers of a run, or how they moved between two
  pipe graph  [flags]              print the stage graph (DOT or Mermaid)
  pipe gc     [flags]              remove cache entries no current stage uses
  pipe stages [kind...]            document the stage kinds

Common flags (before or after the arguments):
  -f file           pipeline file (default pipeline.hcl)
  -var name=value   set a variable (repeatable)
  -var-file file    read variables from an HCL file (repeatable)

Run 'pipe <command> -h' for a command's flags.
`

func main() {
	// PIPE_CPUPROFILE=file writes a CPU profile of the command (for
	// working on pipe's own speed).
	if p := os.Getenv("PIPE_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
			code := realMain(os.Args[1:], os.Stdout, os.Stderr)
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(code)
		}
	}
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal the context is done; a second one exits
		// at once.
		<-ctx.Done()
		stop()
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt, syscall.SIGTERM)
		<-c
		fmt.Fprintln(os.Stderr, "pipe: interrupted twice, exiting")
		os.Exit(exitCancelled)
	}()
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"run": cmdRun, "plan": cmdPlan, "show": cmdShow, "log": cmdLog,
		"graph": cmdGraph, "gc": cmdGC, "stages": cmdStages, "metrics": cmdMetrics,
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fn, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "pipe: unknown command %q\n\n%s", name, usage)
		return exitUsage
	}
	err := fn(ctx, args[1:], stdout, stderr)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintf(stderr, "pipe %s: %v\n", name, ee.err)
		}
		return ee.code
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "pipe %s: cancelled\n", name)
		return exitCancelled
	}
	fmt.Fprintf(stderr, "pipe %s: %v\n", name, err)
	return exitFailed
}

// common holds the flags every pipeline command shares.
type common struct {
	file     string
	vars     multiFlag
	varFiles multiFlag
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.file, "f", "pipeline.hcl", "pipeline `file`")
	fs.Var(&c.vars, "var", "set a variable: `name=value` (repeatable)")
	fs.Var(&c.varFiles, "var-file", "read variables from an HCL `file` (repeatable)")
}

// parseFlags parses flags and positional arguments in any order.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	fs.SetOutput(stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &exitError{code: exitUsage}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// loaded is a pipeline ready to plan or run.
type loaded struct {
	cfg  *config.Pipeline
	ws   *engine.Workspace
	plan *engine.Plan
}

// load reads the pipeline, opens its workspace and plans it. Diagnostics
// are rendered on stderr.
func load(c *common, stderr io.Writer) (*loaded, error) {
	cfg, diags := config.Load(c.file, config.Options{Vars: c.vars, VarFiles: c.varFiles})
	if diags.HasErrors() {
		renderDiags(stderr, cfg, diags)
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("%s has errors", c.file)}
	}
	wsDir := cfg.Workspace.Dir
	if !filepath.IsAbs(wsDir) {
		wsDir = filepath.Join(cfg.Dir, wsDir)
	}
	ws, err := engine.OpenWorkspace(wsDir)
	if err != nil {
		return nil, err
	}
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	plan, pdiags := engine.NewPlan(cfg, reg, ws)
	diags = append(diags, pdiags...)
	if len(diags) > 0 {
		renderDiags(stderr, cfg, diags)
	}
	if diags.HasErrors() {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("%s has errors", c.file)}
	}
	return &loaded{cfg: cfg, ws: ws, plan: plan}, nil
}

func renderDiags(w io.Writer, cfg *config.Pipeline, diags hcl.Diagnostics) {
	var files map[string]*hcl.File
	if cfg != nil && cfg.Parser != nil {
		files = cfg.Files()
	}
	width, color := uint(0), false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if wd, _, err := term.GetSize(int(f.Fd())); err == nil {
			width = uint(wd)
		}
		color = os.Getenv("NO_COLOR") == ""
	}
	hcl.NewDiagnosticTextWriter(w, files, width, color).WriteDiagnostics(diags)
}
