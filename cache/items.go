package cache

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"github.com/pipeml/pipe/artifacts"
)

// ItemResult locates the cached result of one item of a map stage.
type ItemResult struct {
	Digest artifacts.Digest
	Size   int64
	// Data holds the result itself when it is at most InlineMax bytes; it
	// is then stored in the index rather than as an object, so that a
	// stage with thousands of small results reads one file, not
	// thousands. Its digest is verified on use all the same.
	Data []byte
}

// InlineMax is the largest item result kept inside the index.
const InlineMax = 1024

// ItemIndex maps item keys (hashes of everything an item's result depends
// on) to result objects. The engine keeps one index per stage, so that a
// run loads the results of thousands of items with one read. Entries are
// content-addressed: a stale entry can cost a recomputation, never a wrong
// result. It is safe for concurrent use.
type ItemIndex struct {
	path string

	mu sync.Mutex
	m  map[string]ItemResult // guarded by mu
	// The file is a journal, as the stat memo's: Save appends new entries
	// and rewrites the file only after deletions or when it has grown to
	// twice the live entries.
	dirty     bool     // guarded by mu
	rewrite   bool     // an entry was deleted; guarded by mu
	pending   []string // keys put since the last save; guarded by mu
	fileLines int      // guarded by mu
}

// ItemIndex loads the index called id (any string; it is hashed into a
// file name).
func (c *Cache) ItemIndex(id string) *ItemIndex {
	name := artifacts.DigestBytes([]byte(id))
	ix := &ItemIndex{path: filepath.Join(c.dir, "items", string(name)), m: map[string]ItemResult{}}
	if b, err := os.ReadFile(ix.path); err == nil {
		ix.fileLines = parseItemIndex(b, ix.m)
	}
	return ix
}

// parseItemIndex reads index lines into m (later lines win) and returns
// how many lines there were. A torn last line is ignored.
func parseItemIndex(b []byte, m map[string]ItemResult) int {
	lines := 0
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		line := b[:i]
		b = b[i+1:]
		lines++
		key, rest, ok1 := bytes.Cut(line, []byte{' '})
		dig, rest, ok2 := bytes.Cut(rest, []byte{' '})
		size, data, inline := bytes.Cut(rest, []byte{' '})
		if !ok1 || !ok2 || len(key) != 64 || len(dig) != 64 {
			continue
		}
		n, err := strconv.ParseInt(string(size), 10, 64)
		if err != nil {
			continue
		}
		r := ItemResult{Digest: artifacts.Digest(dig), Size: n}
		if inline {
			if r.Data, err = base64.StdEncoding.AppendDecode(make([]byte, 0, n), data); err != nil || int64(len(r.Data)) != n {
				continue
			}
		}
		m[string(key)] = r
	}
	return lines
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
	if old, ok := ix.m[key]; ok && old.Digest == r.Digest && old.Size == r.Size && (old.Data == nil) == (r.Data == nil) {
		return
	}
	ix.m[key] = r
	ix.pending = append(ix.pending, key)
	ix.dirty = true
}

// Delete forgets key (after its object turned out corrupt or missing).
func (ix *ItemIndex) Delete(key string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.m[key]; ok {
		delete(ix.m, key)
		ix.dirty, ix.rewrite = true, true
	}
}

// Retain drops every entry whose key keep rejects.
func (ix *ItemIndex) Retain(keep func(key string) bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for k := range ix.m {
		if !keep(k) {
			delete(ix.m, k)
			ix.dirty, ix.rewrite = true, true
		}
	}
}

// Len is the number of entries.
func (ix *ItemIndex) Len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return len(ix.m)
}

// Save appends the entries put since the last save, or rewrites the
// whole index atomically after deletions or when superseded lines pile up.
func (ix *ItemIndex) Save() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if !ix.dirty {
		return nil
	}
	if !ix.rewrite && ix.fileLines > 0 && ix.fileLines+len(ix.pending) <= 2*len(ix.m)+1024 {
		var b []byte
		for _, k := range ix.pending {
			if r, ok := ix.m[k]; ok {
				b = appendItemLine(b, k, r)
			}
		}
		f, err := os.OpenFile(ix.path, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = f.Write(b)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				ix.fileLines += len(ix.pending)
				ix.pending, ix.dirty = nil, false
				return nil
			}
		}
	}
	keys := make([]string, 0, len(ix.m))
	for k := range ix.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := make([]byte, 0, len(keys)*180)
	for _, k := range keys {
		b = appendItemLine(b, k, ix.m[k])
	}
	if err := WriteFileAtomic(ix.path, b); err != nil {
		return err
	}
	ix.fileLines = len(keys)
	ix.pending, ix.dirty, ix.rewrite = nil, false, false
	return nil
}

func appendItemLine(b []byte, k string, r ItemResult) []byte {
	b = append(b, k...)
	b = append(b, ' ')
	b = append(b, r.Digest...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, r.Size, 10)
	if r.Data != nil {
		b = append(b, ' ')
		b = base64.StdEncoding.AppendEncode(b, r.Data)
	}
	return append(b, '\n')
}

func (ix *ItemIndex) digests() []artifacts.Digest {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	out := make([]artifacts.Digest, 0, len(ix.m))
	for _, r := range ix.m {
		if r.Data == nil {
			out = append(out, r.Digest)
		}
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

// Path is the file the index is stored in.
func (ix *ItemIndex) Path() string { return ix.path }
