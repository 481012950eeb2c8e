package cache

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pipeml/pipe/artifacts"
)

// Live names what a garbage collection must keep: the action keys and the
// item indexes that current stages refer to.
type Live struct {
	Actions    map[string]bool
	ItemIndexs map[string]bool
	// KeepNewer keeps anything used more recently than this long ago.
	KeepNewer time.Duration
}

// GCStats reports what a garbage collection removed and kept.
type GCStats struct {
	ActionsRemoved, ObjectsRemoved, ItemIndexesRemoved int
	BytesFreed                                         int64
	ActionsKept, ObjectsKept                           int
	BytesKept                                          int64
}

// GC removes every action entry, item index and object that live does not
// reach, and temporary files left by killed processes. Call it only while
// holding the workspace lock.
func (c *Cache) GC(live Live) (GCStats, error) {
	var st GCStats
	cutoff := time.Now().Add(-live.KeepNewer)
	recent := func(fi fs.FileInfo) bool { return live.KeepNewer > 0 && fi.ModTime().After(cutoff) }
	reach := map[artifacts.Digest]bool{}
	// Actions.
	err := walkFiles(filepath.Join(c.dir, "actions"), func(p string, fi fs.FileInfo) error {
		key := filepath.Base(p)
		if strings.HasPrefix(key, ".tmp-") || (!live.Actions[key] && !recent(fi)) {
			st.ActionsRemoved++
			st.BytesFreed += fi.Size()
			return os.Remove(p)
		}
		st.ActionsKept++
		a, err := c.GetAction(key)
		if err != nil {
			return nil // a corrupt entry was removed by GetAction
		}
		for _, o := range a.Outputs {
			reach[o.Digest] = true
			if o.Dir {
				if m, err := c.ReadManifest(o.Digest); err == nil {
					for _, e := range m.Entries {
						reach[e.Digest] = true
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	// Item indexes.
	liveIx := map[string]bool{}
	for id := range live.ItemIndexs {
		liveIx[string(artifacts.DigestBytes([]byte(id)))] = true
	}
	err = walkFiles(filepath.Join(c.dir, "items"), func(p string, fi fs.FileInfo) error {
		name := filepath.Base(p)
		if !liveIx[name] && !recent(fi) {
			st.ItemIndexesRemoved++
			st.BytesFreed += fi.Size()
			return os.Remove(p)
		}
		ix := c.itemIndexAt(p)
		for _, d := range ix.digests() {
			reach[d] = true
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	// Objects.
	err = walkFiles(filepath.Join(c.dir, "objects"), func(p string, fi fs.FileInfo) error {
		d := artifacts.Digest(filepath.Base(p))
		if reach[d] || (recent(fi) && d.Valid()) {
			st.ObjectsKept++
			st.BytesKept += fi.Size()
			return nil
		}
		st.ObjectsRemoved++
		st.BytesFreed += fi.Size()
		return os.Remove(p)
	})
	if err != nil {
		return st, err
	}
	return st, c.CleanTemp()
}

func (c *Cache) itemIndexAt(p string) *ItemIndex {
	ix := &ItemIndex{path: p, m: map[string]ItemResult{}}
	b, err := os.ReadFile(p)
	if err != nil {
		return ix
	}
	ix.fileLines = parseItemIndex(b, ix.m)
	return ix
}

func walkFiles(root string, fn func(p string, fi fs.FileInfo) error) error {
	return filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if de.IsDir() {
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return nil
		}
		return fn(p, fi)
	})
}
