package engine

import (
	"fmt"
	"strings"

	"context"
	"encoding/json"
	"github.com/pipeml/pipe/engine/config"
	"path/filepath"
	"sort"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/cache"
	"github.com/pipeml/pipe/stages"
)

// keyInfo is a computed action key with its parts.
type keyInfo struct {
	key   string
	parts KeyParts
	// manifests of folder inputs, by absolute path.
	manifests map[string]*artifacts.Manifest
}

// upstreamOutputs maps the materialised path of each finished stage's
// outputs to its artifact.
type upstreamOutputs map[string]artifacts.Artifact

// computeKey hashes everything the stage's result depends on: the cache
// format, kind and version, the parameters in canonical JSON, the
// stage's extra key parts (Keyer), the content of every input path (files
// by content, folders by manifest; a path's base name is hashed too, its
// folder is not), and the digests of upstream outputs referenced from
// parameters.
func (pl *Plan) computeKey(ctx context.Context, n *Node, inputs []*NodeInput, extra map[string]string, up upstreamOutputs, parallel int) (*keyInfo, error) {
	ws := pl.Workspace
	ki := &keyInfo{manifests: map[string]*artifacts.Manifest{}}
	ki.parts = KeyParts{
		Kind: n.Def.Name, Version: n.Def.Version,
		Params: map[string]json.RawMessage{}, Extra: extra, Refs: map[string]artifacts.Digest{},
	}
	for k, v := range n.ParamsJSON {
		ki.parts.Params[k] = json.RawMessage(v)
	}
	var toHash []string
	for _, in := range inputs {
		for _, p := range in.Paths {
			if _, ok := up[p]; !ok {
				toHash = append(toHash, p)
			}
		}
	}
	hashed := map[string]cache.PathDigest{}
	if len(toHash) > 0 {
		ds, err := ws.Memo.HashPaths(ctx, dedup(toHash), parallel)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			hashed[d.Path] = d
		}
	}
	h := cache.NewHasher()
	h.String("kind", n.Def.Name)
	h.String("version", n.Def.Version)
	for _, k := range sortedKeys(n.ParamsJSON) {
		h.Bytes("param:"+k, n.ParamsJSON[k])
	}
	for _, k := range sortedKeys(extra) {
		h.String("extra:"+k, extra[k])
	}
	inputPaths := map[string]bool{}
	for _, in := range inputs {
		h.Int("input:"+in.Name, int64(len(in.Paths)))
		for _, p := range in.Paths {
			inputPaths[p] = true
			st := InputState{Name: in.Name, Path: p}
			if a, ok := up[p]; ok {
				st.Digest, st.Dir, st.Stage = a.Digest, a.Dir, stageOfOutput(ws, p)
			} else {
				d := hashed[p]
				st.Digest, st.Dir = d.Digest, d.Dir
				if d.Manifest != nil {
					ki.manifests[p] = d.Manifest
				}
			}
			h.String("base", filepath.Base(p))
			h.String("digest", string(st.Digest))
			ki.parts.Inputs = append(ki.parts.Inputs, st)
		}
	}
	for _, r := range n.Refs {
		stage, out := splitRef(r)
		p := ws.OutPath(stage, out)
		a, ok := up[p]
		if !ok || inputPaths[p] {
			continue // hashed as an input
		}
		ki.parts.Refs[r] = a.Digest
		h.String("ref:"+r, string(a.Digest))
	}
	ki.key = h.Sum()
	return ki, nil
}

func stageOfOutput(ws *Workspace, p string) string {
	rel, err := filepath.Rel(filepath.Join(ws.Dir, "out"), p)
	if err != nil {
		return ""
	}
	return filepath.Dir(rel)
}

func splitRef(r string) (string, string) {
	for i := len(r) - 1; i >= 0; i-- {
		if r[i] == '.' {
			return r[:i], r[i+1:]
		}
	}
	return r, ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func dedup(s []string) []string {
	seen := map[string]bool{}
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// stageEnv builds the Env of a stage (without its private folders).
func (pl *Plan) stageEnv(n *Node, inputs []*NodeInput) *stages.Env {
	env := &stages.Env{
		Stage: n.Name, Kind: n.Def.Name, Inputs: map[string]stages.Input{},
		WorkDir: pl.Root, Range: n.Config.DeclRange, Summary: map[string]any{},
	}
	for _, in := range inputs {
		env.Inputs[in.Name] = stages.Input{Name: in.Name, Paths: in.Paths}
	}
	return env
}

// runtimeInputs expands the globs that point into other stages' outputs,
// which exist only once those stages have run. Other paths were resolved
// by NewPlan.
func (pl *Plan) runtimeInputs(n *Node) ([]*NodeInput, error) {
	out := make([]*NodeInput, len(n.Inputs))
	for i, in := range n.Inputs {
		if !in.Deferred {
			out[i] = in
			continue
		}
		c := *in
		c.Paths = nil
		for _, p := range in.Paths {
			if !strings.ContainsAny(p, "*?[") {
				c.Paths = append(c.Paths, p)
				continue
			}
			matches, err := config.Glob(pl.Root, p)
			if err != nil {
				return nil, fmt.Errorf("input %s: %v", in.Name, err)
			}
			if len(matches) == 0 {
				return nil, fmt.Errorf("input %s: nothing matches %s", in.Name, pl.rel(p))
			}
			c.Paths = append(c.Paths, matches...)
		}
		out[i] = &c
	}
	return out, nil
}
