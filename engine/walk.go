package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/cache"
)

// Options control a run.
type Options struct {
	// Parallelism is how many stages may execute at once (and how many
	// goroutines hash files or map items); 0 means the number of CPUs.
	Parallelism int
	// FailFast cancels the whole run at the first failure; otherwise
	// independent branches finish.
	FailFast bool
	// Force re-runs the named stages even when cached (map stages map
	// every item again); ForceAll every one.
	Force    map[string]bool
	ForceAll bool
	// Verify re-runs cached stages and fails when an output differs
	// (PIPE_CACHEVERIFY=1). DeepVerify re-hashes every cached object
	// instead of trusting the stat memo.
	Verify, DeepVerify bool
	// Logger receives log lines; nil discards them.
	Logger *slog.Logger
	// Hook receives progress events; nil ignores them.
	Hook Hook
}

// run is the state of one walk. It is valid for one call of Run only.
type run struct {
	plan        *Plan
	opts        Options
	parallelism int
	logger      *slog.Logger
	hook        Hook
	state       map[string]*StageState
	record      *RunRecord

	mu       sync.Mutex
	newState []*StageState                 // guarded by mu
	outputs  map[string]artifacts.Artifact // by materialised path; guarded by mu
}

func (r *run) upstream() upstreamOutputs {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(upstreamOutputs, len(r.outputs))
	for k, v := range r.outputs {
		m[k] = v
	}
	return m
}

// RunError is returned by Run when a stage failed or the run was
// cancelled.
type RunError struct {
	Failed    []string
	Cancelled bool
}

func (e *RunError) Error() string {
	if len(e.Failed) == 0 {
		return "run cancelled"
	}
	return fmt.Sprintf("stage %s failed", strings.Join(e.Failed, ", "))
}

func newRun(pl *Plan, opts Options) (*run, error) {
	r := &run{plan: pl, opts: opts, parallelism: opts.Parallelism, logger: opts.Logger, hook: opts.Hook,
		outputs: map[string]artifacts.Artifact{}}
	if r.parallelism < 1 {
		r.parallelism = runtime.NumCPU()
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if r.hook == nil {
		r.hook = NopHook{}
	}
	st, err := pl.Workspace.State()
	if err != nil {
		return nil, err
	}
	r.state = st
	return r, nil
}

// Run brings the targets (all stages when none) and everything upstream of
// them up to date. Stages run in parallel where the graph allows; a slot
// of Options.Parallelism is held only while a stage executes. A failed
// stage skips its dependents. The caller must hold the workspace lock.
// The record is saved in the workspace and returned with a *RunError when
// a stage failed or the run was cancelled.
func (pl *Plan) Run(ctx context.Context, targets []string, opts Options) (*RunRecord, error) {
	sel, err := pl.Select(targets)
	if err != nil {
		return nil, err
	}
	r, err := newRun(pl, opts)
	if err != nil {
		return nil, err
	}
	r.record = &RunRecord{ID: time.Now().UTC().Format("20060102T150405.000Z") + "-" + cache.RandomID()[:6], Started: time.Now().UTC(), Targets: targets}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	sem := make(chan struct{}, r.parallelism)
	done := map[string]chan struct{}{}
	results := map[string]*StageResult{}
	var resMu sync.Mutex
	for _, name := range sel {
		done[name] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, name := range sel {
		n := pl.Nodes[name]
		wg.Go(func() {
			defer close(done[name])
			res := r.visit(ctx, n, sem, done, results, &resMu)
			resMu.Lock()
			results[name] = res
			resMu.Unlock()
			if res.Status == StatusFailed && opts.FailFast {
				cancel(fmt.Errorf("stage %s failed (--fail-fast)", name))
			}
			r.hook.StageFinished(res)
		})
	}
	wg.Wait()

	rec := r.record
	rec.OK = true
	var rerr RunError
	for _, name := range sel {
		res := results[name]
		rec.Stages = append(rec.Stages, res)
		switch res.Status {
		case StatusFailed:
			rerr.Failed = append(rerr.Failed, name)
			rec.OK = false
		case StatusCancelled:
			rerr.Cancelled = true
			rec.OK = false
		case StatusSkipped:
			rec.OK = false
		}
	}
	rec.Finished = time.Now().UTC()
	rec.Seconds = rec.Finished.Sub(rec.Started).Seconds()
	var errs []error
	errs = append(errs, pl.Workspace.saveState(r.newState))
	errs = append(errs, pl.Workspace.Memo.Save())
	errs = append(errs, pl.Workspace.SaveRun(rec))
	if err := errors.Join(errs...); err != nil {
		return rec, fmt.Errorf("saving the run record: %v", err)
	}
	if !rec.OK {
		sort.Strings(rerr.Failed)
		return rec, &rerr
	}
	return rec, nil
}

// visit waits for n's dependencies, then executes n inside a parallelism
// slot.
func (r *run) visit(ctx context.Context, n *Node, sem chan struct{}, done map[string]chan struct{}, results map[string]*StageResult, mu *sync.Mutex) *StageResult {
	res := &StageResult{Name: n.Name, Kind: n.Def.Name}
	var failed []string
	for _, d := range n.Deps {
		<-done[d] // every dependency finishes, cancelled or not
		mu.Lock()
		dr := results[d]
		mu.Unlock()
		if !dr.OK() {
			failed = append(failed, d)
		}
	}
	if len(failed) > 0 {
		res.Status = StatusSkipped
		res.Why = []string{"upstream stage " + strings.Join(failed, ", ") + " did not complete"}
		if ctx.Err() != nil {
			res.Status = StatusCancelled
		}
		return res
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		res.Status = StatusCancelled
		res.Error = context.Cause(ctx).Error()
		return res
	}
	defer func() { <-sem }()
	if ctx.Err() != nil {
		res.Status = StatusCancelled
		res.Error = context.Cause(ctx).Error()
		return res
	}
	r.hook.StageStarted(n.Name)
	return r.execute(ctx, n)
}
