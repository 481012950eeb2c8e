package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/cache"
	"github.com/pipeml/pipe/stages"
)

// actionMeta is what an action entry remembers besides its outputs.
type actionMeta struct {
	Summary map[string]any `json:"summary,omitempty"`
	Items   *ItemCounts    `json:"items,omitempty"`
	Stage   string         `json:"stage"`
	Kind    string         `json:"kind"`
}

// execute brings one stage up to date: from the cache when its action key
// is there and its objects are intact, by running it otherwise.
func (r *run) execute(ctx context.Context, n *Node) *StageResult {
	start := time.Now()
	res := &StageResult{Name: n.Name, Kind: n.Def.Name}
	defer func() { res.Seconds = time.Since(start).Seconds() }()
	log := r.logger.With("stage", n.Name)
	pl := r.plan
	ws := pl.Workspace

	fail := func(err error) *StageResult {
		res.Status = StatusFailed
		if ctx.Err() != nil {
			res.Status = StatusCancelled
			err = fmt.Errorf("cancelled: %w", context.Cause(ctx))
		}
		res.Err = err
		res.Error = err.Error()
		return res
	}

	inputs, err := pl.runtimeInputs(n)
	if err != nil {
		return fail(err)
	}
	env := pl.stageEnv(n, inputs)
	env.Parallelism = r.parallelism
	env.Logger = log
	var extra map[string]string
	if k, ok := n.Stage.(stages.Keyer); ok {
		if extra, err = k.KeyParts(ctx, env); err != nil {
			return fail(err)
		}
	}
	ki, err := pl.computeKey(ctx, n, inputs, extra, r.upstream(), r.parallelism)
	if err != nil {
		return fail(err)
	}
	res.Key = ki.key
	res.Inputs = ki.parts.Inputs
	prev := r.state[n.Name]
	forced := r.opts.ForceAll || r.opts.Force[n.Name]

	var cached *cache.Action
	if !forced {
		a, err := ws.Cache.GetAction(ki.key)
		switch {
		case errors.Is(err, cache.ErrNotFound):
		case err != nil:
			log.Warn("corrupt cache entry; recomputing", "err", err)
		default:
			if err := r.checkOutputs(n, a); err != nil {
				log.Warn("corrupt or missing cache object; recomputing", "err", err)
				ws.Cache.DeleteAction(ki.key)
			} else {
				cached = a
			}
		}
	}
	if cached != nil && !r.opts.Verify {
		outs, err := r.materialize(n, cached.Outputs)
		if err != nil {
			return fail(err)
		}
		var meta actionMeta
		json.Unmarshal(cached.Meta, &meta)
		res.Status, res.Outputs, res.Summary = StatusCached, outs, meta.Summary
		if prev == nil || prev.Key != ki.key {
			res.Why = []string{"outputs found in the cache (an earlier run with the same inputs and parameters)"}
		} else {
			res.Why = []string{"up to date"}
		}
		r.recordState(n, ki, res, false)
		return res
	}
	switch {
	case forced:
		res.Why = []string{"forced (--force)"}
	case cached != nil:
		res.Why = []string{"verifying the cache (PIPE_CACHEVERIFY=1)"}
	default:
		res.Why = pl.why(prev, ki)
	}
	log.Info("running", "why", res.Why[0])

	dir := filepath.Join(ws.Dir, "tmp", n.Name+"-"+cache.RandomID())
	env.OutDir = filepath.Join(dir, "out")
	env.TempDir = filepath.Join(dir, "tmp")
	defer os.RemoveAll(dir)
	for _, d := range []string{env.OutDir, env.TempDir} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			return fail(err)
		}
	}
	env.Progress = func(done, total int) { r.hook.StageProgress(n.Name, done, total) }
	if m, ok := n.Stage.(stages.Mapper); ok {
		items, err := r.runMapper(ctx, n, m, env, ki, forced || cached != nil)
		res.Items = items
		if err != nil {
			return fail(err)
		}
	} else if err := n.Stage.Run(ctx, env); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	arts, err := r.storeOutputs(n, env)
	if err != nil {
		return fail(err)
	}
	if cached != nil {
		if err := sameOutputs(cached.Outputs, arts); err != nil {
			return fail(fmt.Errorf("PIPE_CACHEVERIFY: stage is not deterministic: %v", err))
		}
	}
	meta, _ := json.Marshal(actionMeta{Summary: env.Summary, Items: res.Items, Stage: n.Name, Kind: n.Def.Name})
	if err := ws.Cache.PutAction(ki.key, &cache.Action{Outputs: arts, Meta: meta, Created: time.Now().UTC()}); err != nil {
		return fail(err)
	}
	outs, err := r.materialize(n, arts)
	if err != nil {
		return fail(err)
	}
	pl.storeInputManifests(ki)
	res.Inputs = ki.parts.Inputs
	res.Status, res.Outputs, res.Summary = StatusExecuted, outs, env.Summary
	r.recordState(n, ki, res, true)
	return res
}

// checkOutputs verifies the objects behind a cached entry.
func (r *run) checkOutputs(n *Node, a *cache.Action) error {
	if len(a.Outputs) != len(n.Outputs) {
		return fmt.Errorf("entry has %d outputs, stage declares %d", len(a.Outputs), len(n.Outputs))
	}
	for i, o := range a.Outputs {
		if o.Name != n.Outputs[i].Name {
			return fmt.Errorf("entry has output %q, stage declares %q", o.Name, n.Outputs[i].Name)
		}
		if err := r.plan.Workspace.Cache.CheckArtifact(o, r.plan.Workspace.Memo, r.opts.DeepVerify); err != nil {
			return err
		}
	}
	return nil
}

// storeOutputs moves the outputs a stage wrote into the cache.
func (r *run) storeOutputs(n *Node, env *stages.Env) ([]artifacts.Artifact, error) {
	c := r.plan.Workspace.Cache
	var arts []artifacts.Artifact
	for _, o := range n.Outputs {
		p := env.OutputPath(o.Name)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("the stage did not write its output %q", o.Name)
		}
		a := artifacts.Artifact{Name: o.Name}
		switch {
		case o.Kind == stages.Dir && fi.IsDir():
			d, m, err := c.PutDir(p)
			if err != nil {
				return nil, err
			}
			a.Digest, a.Size, a.Dir = d, m.Size(), true
		case o.Kind == stages.File && fi.Mode().IsRegular():
			d, size, err := c.PutFile(p)
			if err != nil {
				return nil, err
			}
			a.Digest, a.Size = d, size
		case o.Kind == stages.Dir:
			return nil, fmt.Errorf("output %q must be a folder", o.Name)
		default:
			return nil, fmt.Errorf("output %q must be a regular file", o.Name)
		}
		arts = append(arts, a)
	}
	return arts, nil
}

// materialize makes out/<stage>/<output> hold each artifact, leaving in
// place what already matches, and returns the artifacts with their paths.
func (r *run) materialize(n *Node, arts []artifacts.Artifact) ([]artifacts.Artifact, error) {
	ws := r.plan.Workspace
	out := make([]artifacts.Artifact, len(arts))
	for i, a := range arts {
		dest := ws.OutPath(n.Name, a.Name)
		cur, err := ws.Memo.HashPaths(context.Background(), []string{dest}, r.parallelism)
		if err != nil || cur[0].Digest != a.Digest || cur[0].Dir != a.Dir {
			if err := ws.Cache.Materialize(a, dest, ws.Memo); err != nil {
				return nil, fmt.Errorf("materialising output %q: %v", a.Name, err)
			}
		}
		a.Path = dest
		out[i] = a
	}
	return out, nil
}

func sameOutputs(a, b []artifacts.Artifact) error {
	for i := range a {
		if i >= len(b) || a[i].Digest != b[i].Digest {
			return fmt.Errorf("output %q differs from the cached one", a[i].Name)
		}
	}
	return nil
}

func (r *run) recordState(n *Node, ki *keyInfo, res *StageResult, executed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &StageState{
		Stage: n.Name, Kind: n.Def.Name, Key: ki.key, Parts: ki.parts, Outputs: res.Outputs,
		RunID: r.record.ID, Time: time.Now().UTC(), Executed: executed, Summary: res.Summary,
	}
	if prev := r.state[n.Name]; !executed && prev != nil && prev.Key == ki.key {
		st.RunID, st.Time, st.Executed = prev.RunID, prev.Time, prev.Executed
		st.Parts.Inputs = mergeManifests(st.Parts.Inputs, prev.Parts.Inputs)
	}
	r.newState = append(r.newState, st)
	for _, o := range res.Outputs {
		r.outputs[o.Path] = o
	}
}

// mergeManifests carries the stored manifests of folder inputs over from
// the previous state when a stage was cached.
func mergeManifests(cur, prev []InputState) []InputState {
	m := map[string]artifacts.Digest{}
	for _, p := range prev {
		if p.Manifest != "" {
			m[p.Name+"\x00"+p.Path+"\x00"+string(p.Digest)] = p.Manifest
		}
	}
	for i := range cur {
		if d, ok := m[cur[i].Name+"\x00"+cur[i].Path+"\x00"+string(cur[i].Digest)]; ok {
			cur[i].Manifest = d
		}
	}
	return cur
}
