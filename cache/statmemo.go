package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipeml/pipe/artifacts"
)

// fileID is what the stat memo compares: when all of it is unchanged the
// file's content is assumed unchanged (as git's index and the go command
// do). ctime catches writes that restore an old mtime.
type fileID struct {
	Dev, Ino     uint64
	Size         int64
	Mtime, Ctime int64
}

type memoEntry struct {
	id     fileID
	digest artifacts.Digest
}

// racyWindow: a file modified this recently may still be written within
// the same timestamp tick, so its digest is not memoised (git's "racy
// clean" problem).
const racyWindow = 50 * time.Millisecond

// StatMemo maps file paths to their digests, keyed by stat information, so
// that unchanged files are never read twice. It is safe for concurrent use.
type StatMemo struct {
	path string

	mu    sync.Mutex
	m     map[string]memoEntry // guarded by mu
	dirty bool                 // guarded by mu
}

// LoadStatMemo reads the memo stored at path; a missing or unreadable
// memo gives an empty one (it is only an accelerator).
func LoadStatMemo(path string) *StatMemo {
	s := &StatMemo{path: path, m: map[string]memoEntry{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return s
	}
	s.m = make(map[string]memoEntry, bytes.Count(b, []byte{'\n'}))
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		var e memoEntry
		var nums [5]uint64
		ok := true
		for k := range nums {
			n, rest, good := parseUint(line)
			if !good {
				ok = false
				break
			}
			nums[k], line = n, rest
		}
		if !ok || len(line) < 66 || line[64] != ' ' {
			continue
		}
		e.id = fileID{Dev: nums[0], Ino: nums[1], Size: int64(nums[2]), Mtime: int64(nums[3]), Ctime: int64(nums[4])}
		e.digest = artifacts.Digest(line[:64])
		s.m[string(line[65:])] = e
	}
	return s
}

// parseUint reads a decimal number followed by a space.
func parseUint(b []byte) (uint64, []byte, bool) {
	var n uint64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + uint64(b[i]-'0')
	}
	if i == 0 || i > 19 || i >= len(b) || b[i] != ' ' {
		return 0, nil, false
	}
	return n, b[i+1:], true
}

// Save writes the memo back atomically if it changed. Entries of files
// that no longer exist are dropped.
func (s *StatMemo) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty || s.path == "" {
		return nil
	}
	keys := make([]string, 0, len(s.m))
	for k := range s.m {
		if strings.ContainsRune(k, '\n') {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := make([]byte, 0, len(keys)*160)
	for _, k := range keys {
		e := s.m[k]
		b = strconv.AppendUint(b, e.id.Dev, 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, e.id.Ino, 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(e.id.Size), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(e.id.Mtime), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(e.id.Ctime), 10)
		b = append(b, ' ')
		b = append(b, e.digest...)
		b = append(b, ' ')
		b = append(b, k...)
		b = append(b, '\n')
	}
	if err := WriteFileAtomic(s.path, b); err != nil {
		return err
	}
	s.dirty = false
	return nil
}

// Forget drops every entry under path (a file or a folder).
func (s *StatMemo) Forget(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := path + string(filepath.Separator)
	for k := range s.m {
		if k == path || strings.HasPrefix(k, prefix) {
			delete(s.m, k)
			s.dirty = true
		}
	}
}

// Record remembers that the file at path, as described by fi, has digest d.
func (s *StatMemo) Record(path string, fi fs.FileInfo, d artifacts.Digest) {
	if s == nil || time.Since(fi.ModTime()) < racyWindow {
		return
	}
	id := statID(fi)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[path]; ok && old.id == id && old.digest == d {
		return
	}
	s.m[path] = memoEntry{id: id, digest: d}
	s.dirty = true
}

func (s *StatMemo) lookup(path string, fi fs.FileInfo) (artifacts.Digest, bool) {
	if s == nil {
		return "", false
	}
	s.mu.Lock()
	e, ok := s.m[path]
	s.mu.Unlock()
	if !ok || e.id != statID(fi) {
		return "", false
	}
	return e.digest, true
}

// HashFile returns the digest and size of the regular file at path,
// reading it only when the memo does not know it. The path is used as
// given (callers pass absolute or consistently relative paths).
func (s *StatMemo) HashFile(path string) (artifacts.Digest, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	return s.hashStat(path, fi)
}

func (s *StatMemo) hashStat(path string, fi fs.FileInfo) (artifacts.Digest, int64, error) {
	if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a regular file", path)
	}
	if d, ok := s.lookup(path, fi); ok {
		return d, fi.Size(), nil
	}
	d, n, err := artifacts.DigestFile(path)
	if err != nil {
		return "", 0, err
	}
	// Re-stat: a file that changed while it was read is not memoised.
	if fi2, err := os.Stat(path); err == nil && statID(fi2) == statID(fi) {
		s.Record(path, fi, d)
	}
	return d, n, nil
}

// PathDigest is the digest of one input path: a file's content digest, or
// a folder's manifest digest.
type PathDigest struct {
	Path     string
	Digest   artifacts.Digest
	Size     int64
	Dir      bool
	Manifest *artifacts.Manifest
}

// HashPaths returns the digest of each path (files by content, folders by
// manifest). Files are stat'ed, looked up in the memo and, when unknown,
// hashed on up to parallel goroutines. Symbolic links are followed;
// special files and dangling links inside folders are skipped.
func (s *StatMemo) HashPaths(ctx context.Context, paths []string, parallel int) ([]PathDigest, error) {
	if parallel < 1 {
		parallel = runtime.GOMAXPROCS(0)
	}
	out := make([]PathDigest, len(paths))
	type job struct {
		path  string
		owner int // index in out
		entry int // index in that manifest, or -1 for a plain file
	}
	var jobs []job
	for i, p := range paths {
		out[i].Path = p
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			jobs = append(jobs, job{p, i, -1})
			continue
		}
		out[i].Dir = true
		m := &artifacts.Manifest{}
		out[i].Manifest = m
		// Walk without stat'ing (ReadDir gives the types); the workers
		// stat in parallel.
		err = filepath.WalkDir(p, func(fp string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if de.IsDir() {
				return nil
			}
			rel, err := filepath.Rel(p, fp)
			if err != nil {
				return err
			}
			m.Entries = append(m.Entries, artifacts.ManifestEntry{Path: filepath.ToSlash(rel)})
			jobs = append(jobs, job{fp, i, len(m.Entries) - 1})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range min(parallel, len(jobs)) {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= len(jobs) || ctx.Err() != nil {
					return
				}
				j := jobs[k]
				fi, err := os.Stat(j.path)
				if j.entry >= 0 && (errors.Is(err, fs.ErrNotExist) || err == nil && !fi.Mode().IsRegular()) {
					continue // dangling link or special file: left out below
				}
				var d artifacts.Digest
				var n int64
				if err == nil {
					d, n, err = s.hashStat(j.path, fi)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				if j.entry < 0 {
					out[j.owner].Digest, out[j.owner].Size = d, n
				} else {
					e := &out[j.owner].Manifest.Entries[j.entry]
					e.Digest, e.Size, e.Exec = d, n, fi.Mode()&0o100 != 0
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		if !out[i].Dir {
			continue
		}
		m := out[i].Manifest
		kept := m.Entries[:0]
		for _, e := range m.Entries {
			if e.Digest != "" {
				kept = append(kept, e)
			}
		}
		m.Entries = kept
		m.Sort()
		d, err := m.Digest()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", out[i].Path, err)
		}
		out[i].Digest, out[i].Size = d, m.Size()
	}
	return out, nil
}
