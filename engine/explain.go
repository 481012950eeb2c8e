package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pipeml/pipe/cache"
	"github.com/pipeml/pipe/stages"
)

// Explain says, for the targets and everything upstream, whether each
// stage would be taken from the cache or run, and why, without running or
// changing anything (apart from refreshing the stat memo). A stage
// downstream of one that will run cannot have its key computed; its
// reasons say so.
func (pl *Plan) Explain(ctx context.Context, targets []string, opts Options) ([]*StageResult, error) {
	sel, err := pl.Select(targets)
	if err != nil {
		return nil, err
	}
	r, err := newRun(pl, opts)
	if err != nil {
		return nil, err
	}
	ws := pl.Workspace
	status := map[string]Status{}
	var out []*StageResult
	for _, name := range sel {
		start := time.Now()
		n := pl.Nodes[name]
		res := &StageResult{Name: name, Kind: n.Def.Name}
		out = append(out, res)
		var pending []string
		for _, d := range n.Deps {
			if status[d] != StatusCached {
				pending = append(pending, d)
			}
		}
		if len(pending) > 0 {
			res.Status = StatusWillRun
			for _, d := range pending {
				res.Why = append(res.Why, fmt.Sprintf("upstream stage %s will run", d))
			}
			status[name] = res.Status
			continue
		}
		inputs, err := pl.runtimeInputs(n)
		if err != nil {
			res.Status, res.Err, res.Error = StatusFailed, err, err.Error()
			status[name] = res.Status
			continue
		}
		env := pl.stageEnv(n, inputs)
		var extra map[string]string
		if k, ok := n.Stage.(stages.Keyer); ok {
			if extra, err = k.KeyParts(ctx, env); err != nil {
				res.Status, res.Err, res.Error = StatusFailed, err, err.Error()
				status[name] = res.Status
				continue
			}
		}
		ki, err := pl.computeKey(ctx, n, inputs, extra, r.upstream(), r.parallelism)
		if err != nil {
			return nil, err
		}
		res.Key, res.Inputs = ki.key, ki.parts.Inputs
		prev := r.state[name]
		a, err := ws.Cache.GetAction(ki.key)
		switch {
		case opts.ForceAll || opts.Force[name]:
			res.Status, res.Why = StatusWillRun, []string{"forced (--force)"}
		case errors.Is(err, cache.ErrNotFound):
			res.Status, res.Why = StatusWillRun, pl.why(prev, ki)
		case err != nil:
			res.Status, res.Why = StatusWillRun, []string{"cache entry corrupt"}
		default:
			if cerr := r.checkOutputs(n, a); cerr != nil {
				res.Status, res.Why = StatusWillRun, []string{"cache object corrupt or missing: " + cerr.Error()}
				break
			}
			res.Status = StatusCached
			if prev != nil && prev.Key == ki.key {
				res.Why = []string{"up to date"}
			} else {
				res.Why = []string{"outputs found in the cache (an earlier run with the same inputs and parameters)"}
			}
			for _, o := range a.Outputs {
				o.Path = ws.OutPath(name, o.Name)
				res.Outputs = append(res.Outputs, o)
				r.outputs[o.Path] = o
			}
		}
		res.Seconds = time.Since(start).Seconds()
		status[name] = res.Status
	}
	ws.Memo.Save()
	return out, nil
}
