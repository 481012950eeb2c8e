package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/hcl/v2"

	"github.com/pipeml/pipe/engine"
)

type runFlags struct {
	common
	json      bool
	jobs      int
	force     multiFlag
	forceAll  bool
	failFast  bool
	noWait    bool
	verbose   bool
	deepCheck bool
}

func (f *runFlags) register(fs *flag.FlagSet, run bool) {
	f.common.register(fs)
	fs.BoolVar(&f.json, "json", false, "print a machine-readable summary on stdout")
	fs.IntVar(&f.jobs, "j", 0, "run at most `n` stages at once (default: workspace parallelism or the number of CPUs)")
	fs.Var(&f.force, "force", "re-run `stage` even if cached (repeatable; comma-separated lists allowed)")
	fs.BoolVar(&f.forceAll, "force-all", false, "re-run every selected stage")
	if run {
		fs.BoolVar(&f.failFast, "fail-fast", false, "stop everything at the first failure")
		fs.BoolVar(&f.noWait, "no-wait", false, "fail instead of waiting when another pipe run holds the workspace")
		fs.BoolVar(&f.verbose, "v", false, "debug logging")
		fs.BoolVar(&f.deepCheck, "verify", false, "re-hash every cached object before using it")
	}
}

func (f *runFlags) options(l *loaded) (engine.Options, error) {
	opts := engine.Options{
		Parallelism: f.jobs, FailFast: f.failFast, ForceAll: f.forceAll,
		Force: map[string]bool{}, DeepVerify: f.deepCheck,
		Verify: os.Getenv("PIPE_CACHEVERIFY") == "1",
	}
	if opts.Parallelism == 0 {
		opts.Parallelism = l.cfg.Workspace.Parallelism
	}
	if opts.Parallelism == 0 {
		opts.Parallelism = runtime.NumCPU()
	}
	for _, s := range f.force {
		for _, name := range strings.Split(s, ",") {
			if name = strings.TrimSpace(name); name == "" {
				continue
			}
			if l.plan.Nodes[name] == nil {
				return opts, usageErr("--force %s: no such stage", name)
			}
			opts.Force[name] = true
		}
	}
	return opts, nil
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f runFlags
	fs := flag.NewFlagSet("pipe run", flag.ContinueOnError)
	f.register(fs, true)
	targets, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	l, err := load(&f.common, stderr)
	if err != nil {
		return err
	}
	opts, err := f.options(l)
	if err != nil {
		return err
	}
	sel, err := l.plan.Select(targets)
	if err != nil {
		return usageErr("%v", err)
	}
	u := newUI(stderr, len(sel))
	logger := u.logger(f.verbose)
	opts.Logger, opts.Hook = logger, &logHook{ui: u, logger: logger}
	err = l.ws.Lock(ctx, !f.noWait, func(holder string) {
		logger.Warn("waiting for the workspace lock", "holder", holder, "workspace", l.ws.Dir)
	})
	if errors.Is(err, engine.ErrLocked) {
		return &exitError{code: exitLocked, err: err}
	}
	if err != nil {
		return err
	}
	defer l.ws.Unlock()
	uctx, stopUI := context.WithCancel(ctx)
	go u.loop(uctx)
	rec, runErr := l.plan.Run(ctx, targets, opts)
	stopUI()
	u.loop(uctx) // clears the progress line
	if rec == nil {
		return runErr
	}
	for _, s := range rec.Stages {
		if s.Status == engine.StatusFailed && s.Err != nil {
			renderStageError(stderr, l, s)
		}
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rec)
	} else {
		printSummary(stdout, rec.Stages, true)
		c := rec.Counts()
		fmt.Fprintf(stdout, "%d executed, %d cached, %d failed, %d skipped, %d cancelled in %.2fs (run %s)\n",
			c[engine.StatusExecuted], c[engine.StatusCached], c[engine.StatusFailed], c[engine.StatusSkipped], c[engine.StatusCancelled], rec.Seconds, rec.ID)
	}
	var re *engine.RunError
	if errors.As(runErr, &re) {
		if len(re.Failed) == 0 {
			return &exitError{code: exitCancelled, err: runErr}
		}
		return &exitError{code: exitFailed, err: runErr}
	}
	return runErr
}

// renderStageError prints a stage failure as a diagnostic at its block.
func renderStageError(w io.Writer, l *loaded, s *engine.StageResult) {
	var diags hcl.Diagnostics
	if !errors.As(s.Err, &diags) {
		n := l.plan.Nodes[s.Name]
		diags = hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Stage %s failed", s.Name),
			Detail:   s.Err.Error(),
			Subject:  n.Config.DeclRange.Ptr(),
		}}
	}
	for _, d := range diags {
		if d.Subject == nil {
			d.Subject = l.plan.Nodes[s.Name].Config.DeclRange.Ptr()
		}
		if !strings.Contains(d.Summary, s.Name) {
			d.Summary = fmt.Sprintf("%s (stage %s)", d.Summary, s.Name)
		}
	}
	renderDiags(w, l.cfg, diags)
}

// logHook writes plain log lines for stage events and feeds the UI.
type logHook struct {
	ui     *ui
	logger *slog.Logger
}

var _ engine.Hook = (*logHook)(nil)

func (h *logHook) StageStarted(name string) { h.ui.StageStarted(name) }
func (h *logHook) StageProgress(name string, done, total int) {
	h.ui.StageProgress(name, done, total)
}
func (h *logHook) StageFinished(r *engine.StageResult) {
	h.ui.StageFinished(r)
	kv := []any{"status", r.Status, "seconds", fmt.Sprintf("%.2f", r.Seconds)}
	if r.Items != nil {
		kv = append(kv, "items_processed", r.Items.Processed, "items_reused", r.Items.Reused)
	}
	log := h.logger.With("stage", r.Name)
	switch r.Status {
	case engine.StatusFailed:
		log.Error("stage failed", kv...)
	case engine.StatusCached:
		// Quiet: the summary lists cached stages.
	default:
		log.Info("stage finished", kv...)
	}
}

func printSummary(w io.Writer, rs []*engine.StageResult, run bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tKIND\tSTATUS\tTIME\tITEMS\tWHY")
	for _, r := range rs {
		items := "-"
		if r.Items != nil {
			items = fmt.Sprintf("%d new, %d reused", r.Items.Processed, r.Items.Reused)
		}
		t := fmt.Sprintf("%.2fs", r.Seconds)
		if !run {
			t = "-"
		}
		why := strings.Join(r.Why, "; ")
		if r.Status == engine.StatusFailed && r.Error != "" && why == "" {
			why = firstLine(r.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Kind, r.Status, t, items, why)
	}
	tw.Flush()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func cmdPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f runFlags
	fs := flag.NewFlagSet("pipe plan", flag.ContinueOnError)
	f.register(fs, false)
	targets, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	l, err := load(&f.common, stderr)
	if err != nil {
		return err
	}
	opts, err := f.options(l)
	if err != nil {
		return err
	}
	rs, err := l.plan.Explain(ctx, targets, opts)
	if err != nil {
		return err
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"stages": rs})
	}
	printSummary(stdout, rs, false)
	return nil
}
