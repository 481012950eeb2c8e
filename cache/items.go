package cache

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/pipeml/pipe/artifacts"
)

// ItemResult locates the cached result of one item of a map stage.
type ItemResult struct {
	Digest artifacts.Digest
	Size   int64
}

// ItemIndex maps item keys (hashes of everything an item's result depends
// on) to result objects. The engine keeps one index per stage, so that a
// run loads the results of thousands of items with one read. Entries are
// content-addressed: a stale entry can cost a recomputation, never a wrong
// result. It is safe for concurrent use.
type ItemIndex struct {
	path string

	mu    sync.Mutex
	m     map[string]ItemResult // guarded by mu
	dirty bool                  // guarded by mu
}

// ItemIndex loads the index called id (any string; it is hashed into a
// file name).
func (c *Cache) ItemIndex(id string) *ItemIndex {
	name := artifacts.DigestBytes([]byte(id))
	ix := &ItemIndex{path: filepath.Join(c.dir, "items", string(name)), m: map[string]ItemResult{}}
	if b, err := os.ReadFile(ix.path); err == nil {
		parseItemIndex(b, ix.m)
	}
	return ix
}

func parseItemIndex(b []byte, m map[string]ItemResult) {
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		f := strings.Fields(string(line))
		if len(f) != 3 {
			continue
		}
		n, err := strconv.ParseInt(f[2], 10, 64)
		d := artifacts.Digest(f[1])
		if err != nil || !d.Valid() {
			continue
		}
		m[f[0]] = ItemResult{Digest: d, Size: n}
	}
}

// Get returns the result recorded for key.
func (ix *ItemIndex) Get(key string) (ItemResult, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	r, ok := ix.m[key]
	return r, ok
}

// Put records the result of key.
func (ix *ItemIndex) Put(key string, r ItemResult) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old, ok := ix.m[key]; ok && old == r {
		return
	}
	ix.m[key] = r
	ix.dirty = true
}

// Delete forgets key (after its object turned out corrupt or missing).
func (ix *ItemIndex) Delete(key string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.m[key]; ok {
		delete(ix.m, key)
		ix.dirty = true
	}
}

// Retain drops every entry whose key keep rejects.
func (ix *ItemIndex) Retain(keep func(key string) bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for k := range ix.m {
		if !keep(k) {
			delete(ix.m, k)
			ix.dirty = true
		}
	}
}

// Len is the number of entries.
func (ix *ItemIndex) Len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return len(ix.m)
}

// Save writes the index atomically if it changed.
func (ix *ItemIndex) Save() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if !ix.dirty {
		return nil
	}
	keys := make([]string, 0, len(ix.m))
	for k := range ix.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	for _, k := range keys {
		r := ix.m[k]
		fmt.Fprintf(w, "%s %s %d\n", k, r.Digest, r.Size)
	}
	w.Flush()
	if err := WriteFileAtomic(ix.path, b.Bytes()); err != nil {
		return err
	}
	ix.dirty = false
	return nil
}

func (ix *ItemIndex) digests() []artifacts.Digest {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	out := make([]artifacts.Digest, 0, len(ix.m))
	for _, r := range ix.m {
		out = append(out, r.Digest)
	}
	return out
}

// Results returns a copy of every entry.
func (ix *ItemIndex) Results() map[string]ItemResult {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	out := make(map[string]ItemResult, len(ix.m))
	for k, v := range ix.m {
		out[k] = v
	}
	return out
}
