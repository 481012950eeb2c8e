package engine

import (
	"os"
	"path/filepath"
	"time"

	"github.com/pipeml/pipe/cache"
)

// GCStats reports what GC removed and kept.
type GCStats struct {
	cache.GCStats
	// OutputsRemoved counts materialised output folders of stages that
	// are no longer in the pipeline.
	OutputsRemoved int
}

// GC removes from the workspace every cache entry that no stage of the
// plan refers to (through its latest state), unless it was used within
// keep, and the materialised outputs of stages no longer in the pipeline.
// The caller must hold the workspace lock.
func GC(pl *Plan, keep time.Duration) (GCStats, error) {
	ws := pl.Workspace
	st, err := ws.State()
	if err != nil {
		return GCStats{}, err
	}
	live := cache.Live{Actions: map[string]bool{}, ItemIndexs: map[string]bool{}, KeepNewer: keep}
	var kept []*StageState
	for name, s := range st {
		n := pl.Nodes[name]
		if n == nil || n.Def.Name != s.Kind {
			continue
		}
		kept = append(kept, s)
		live.Actions[s.Key] = true
		live.ItemIndexs[n.Def.Name+"\x00"+n.Name] = true
	}
	var out GCStats
	out.GCStats, err = ws.Cache.GC(live)
	if err != nil {
		return out, err
	}
	ents, _ := os.ReadDir(filepath.Join(ws.Dir, "out"))
	for _, e := range ents {
		if pl.Nodes[e.Name()] == nil {
			if os.RemoveAll(filepath.Join(ws.Dir, "out", e.Name())) == nil {
				out.OutputsRemoved++
			}
		}
	}
	ws.pruneState(kept)
	return out, nil
}
