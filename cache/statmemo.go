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

	// SkipDirs holds absolute folder paths that input folders never
	// include (the workspace folder itself, so an input folder that
	// contains it does not change with every run). Set it before hashing.
	SkipDirs []string

	mu sync.RWMutex
	m  map[string]memoEntry // guarded by mu
	// The file is a journal: Save appends the entries recorded since the
	// last save (later lines win on load) and rewrites it whole only when
	// entries were dropped or it has grown to twice the live entries.
	dirty     bool     // guarded by mu
	rewrite   bool     // an entry was dropped; guarded by mu
	pending   []string // keys recorded since the last save; guarded by mu
	fileLines int      // lines in the file; guarded by mu
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
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break // a line torn by a crash
		}
		line := b[:i]
		b = b[i+1:]
		s.fileLines++
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

// Save writes what changed since the last save: appended to the file, or
// the whole memo through a temporary file and a rename when entries were
// dropped or the file holds too many superseded lines. A crash mid-append
// leaves at most a torn last line, which the loader ignores.
func (s *StatMemo) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty || s.path == "" {
		return nil
	}
	if !s.rewrite && s.fileLines > 0 && s.fileLines+len(s.pending) <= 2*len(s.m)+1024 {
		b := make([]byte, 0, len(s.pending)*160)
		for _, k := range s.pending {
			if e, ok := s.m[k]; ok && !strings.ContainsRune(k, '\n') {
				b = appendMemoLine(b, k, e)
			}
		}
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = f.Write(b)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				s.fileLines += len(s.pending)
				s.pending, s.dirty = nil, false
				return nil
			}
		}
		// Fall through to a full rewrite.
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
		b = appendMemoLine(b, k, s.m[k])
	}
	if err := WriteFileAtomic(s.path, b); err != nil {
		return err
	}
	s.fileLines = len(keys)
	s.pending, s.dirty, s.rewrite = nil, false, false
	return nil
}

func appendMemoLine(b []byte, k string, e memoEntry) []byte {
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
	return append(b, '\n')
}

// Forget drops every entry under path (a file or a folder).
func (s *StatMemo) Forget(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := path + string(filepath.Separator)
	for k := range s.m {
		if k == path || strings.HasPrefix(k, prefix) {
			delete(s.m, k)
			s.dirty, s.rewrite = true, true
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
	s.pending = append(s.pending, path)
	s.dirty = true
}

func (s *StatMemo) lookup(path string, fi fs.FileInfo) (artifacts.Digest, bool) {
	return s.lookupID(path, statID(fi))
}

func (s *StatMemo) lookupID(path string, id fileID) (artifacts.Digest, bool) {
	if s == nil {
		return "", false
	}
	s.mu.RLock()
	e, ok := s.m[path]
	s.mu.RUnlock()
	if !ok || e.id != id {
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
// manifest, leaving out version-control metadata folders such as .git and
// the folders in SkipDirs). Folders are walked on up to parallel goroutines, one folder
// at a time each; files are stat'ed relative to their open folder and
// looked up in the memo, and only unknown files are read, again in
// parallel. Symbolic links to files are followed; links to folders,
// dangling links and special files inside folders are left out.
func (s *StatMemo) HashPaths(ctx context.Context, paths []string, parallel int) ([]PathDigest, error) {
	if parallel < 1 {
		parallel = runtime.GOMAXPROCS(0)
	}
	out := make([]PathDigest, len(paths))
	var misses []miss
	w := &walker{memo: s}
	for i, p := range paths {
		out[i].Path = p
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			misses = append(misses, miss{path: p, owner: i, entry: -1})
			continue
		}
		out[i].Dir = true
		out[i].Manifest = &artifacts.Manifest{}
		w.pending = append(w.pending, dirTask{owner: i, abs: p})
	}
	found, err := w.run(ctx, parallel)
	if err != nil {
		return nil, err
	}
	counts := make([]int, len(out))
	for _, f := range found {
		counts[f.owner]++
	}
	for i, n := range counts {
		if out[i].Manifest != nil {
			out[i].Manifest.Entries = make([]artifacts.ManifestEntry, 0, n)
		}
	}
	for _, f := range found {
		m := out[f.owner].Manifest
		m.Entries = append(m.Entries, f.entry)
		if f.miss {
			misses = append(misses, miss{path: f.path, owner: f.owner, entry: len(m.Entries) - 1})
		}
	}
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range min(parallel, len(misses)) {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= len(misses) || ctx.Err() != nil {
					return
				}
				j := misses[k]
				fi, err := os.Stat(j.path)
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
		m.Sort()
		d, err := m.Digest()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", out[i].Path, err)
		}
		out[i].Digest, out[i].Size = d, m.Size()
		s.prune(out[i].Path, m)
	}
	return out, nil
}

// prune drops the memo's entries for files under folder root that its
// walk no longer found (deleted or renamed files), leaving alone what the
// walk does not look into (SkipDirs, version-control folders). It first
// counts, so that the usual case, nothing gone, allocates nothing.
func (s *StatMemo) prune(root string, m *artifacts.Manifest) {
	prefix := root + string(filepath.Separator)
	walked := func(k string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		for _, d := range s.SkipDirs {
			if k == d || strings.HasPrefix(k, d+string(filepath.Separator)) {
				return false
			}
		}
		rest := k[len(prefix)-1:] // from the separator on
		if !strings.Contains(rest, string(filepath.Separator)+".") {
			return true // the version-control folders' names start with a dot
		}
		for name := range vcsDirs {
			if strings.Contains(rest, string(filepath.Separator)+name+string(filepath.Separator)) {
				return false
			}
		}
		return true
	}
	s.mu.RLock()
	n := 0
	for k := range s.m {
		if walked(k) {
			n++
		}
	}
	s.mu.RUnlock()
	if n <= len(m.Entries) {
		return
	}
	found := make(map[string]bool, len(m.Entries))
	for _, e := range m.Entries {
		found[prefix+filepath.FromSlash(e.Path)] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.m {
		if walked(k) && !found[k] {
			delete(s.m, k)
			s.dirty, s.rewrite = true, true
		}
	}
}

// miss is a file whose digest the memo does not know.
type miss struct {
	path  string
	owner int // index in the result
	entry int // index in that manifest, or -1 for a plain file
}

type dirTask struct {
	owner    int
	abs, rel string
}

type foundFile struct {
	owner int
	path  string
	entry artifacts.ManifestEntry
	miss  bool
}

// walker walks folders in parallel.
type walker struct {
	memo *StatMemo

	mu      sync.Mutex
	cond    *sync.Cond
	pending []dirTask // guarded by mu
	active  int       // workers busy with a folder; guarded by mu
	err     error     // guarded by mu
}

func (w *walker) run(ctx context.Context, parallel int) ([]foundFile, error) {
	if len(w.pending) == 0 {
		return nil, nil
	}
	w.cond = sync.NewCond(&w.mu)
	results := make([][]foundFile, parallel)
	var wg sync.WaitGroup
	for k := range parallel {
		wg.Go(func() {
			for {
				w.mu.Lock()
				for len(w.pending) == 0 && w.active > 0 && w.err == nil {
					w.cond.Wait()
				}
				if len(w.pending) == 0 || w.err != nil {
					w.mu.Unlock()
					w.cond.Broadcast()
					return
				}
				t := w.pending[len(w.pending)-1]
				w.pending = w.pending[:len(w.pending)-1]
				w.active++
				w.mu.Unlock()

				sub, files, err := w.readDir(t)
				if err == nil {
					err = ctx.Err()
				}
				results[k] = append(results[k], files...)
				w.mu.Lock()
				w.active--
				w.pending = append(w.pending, sub...)
				if err != nil && w.err == nil {
					w.err = err
				}
				w.mu.Unlock()
				w.cond.Broadcast()
			}
		})
	}
	wg.Wait()
	if w.err != nil {
		return nil, w.err
	}
	total := 0
	for _, r := range results {
		total += len(r)
	}
	all := make([]foundFile, 0, total)
	for _, r := range results {
		all = append(all, r...)
	}
	return all, nil
}

// vcsDirs are version-control metadata folders. They are never part of a
// folder input's digest: they change with every commit, fetch or status
// call without any tracked file changing, and no stage reads them.
var vcsDirs = map[string]bool{".git": true, ".hg": true, ".svn": true, ".bzr": true, ".jj": true}

// skipDir reports whether the subfolder abs (named name) is left out of
// folder digests.
func (w *walker) skipDir(name, abs string) bool {
	if vcsDirs[name] {
		return true
	}
	for _, d := range w.memo.SkipDirs {
		if d == abs {
			return true
		}
	}
	return false
}

// readDir lists one folder: its subfolders to walk, and its files with
// their memoised digests where the memo knows them.
func (w *walker) readDir(t dirTask) ([]dirTask, []foundFile, error) {
	f, err := os.Open(t.abs)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, nil, err
	}
	var sub []dirTask
	files := make([]foundFile, 0, len(ents))
	// buf holds the full path of each entry; the memo is looked up with it
	// without allocating a string (only misses keep their path).
	buf := make([]byte, 0, len(t.abs)+64)
	for _, de := range ents {
		name := de.Name()
		buf = append(append(append(buf[:0], t.abs...), filepath.Separator), name...)
		rel := name
		if t.rel != "" {
			rel = t.rel + "/" + name
		}
		typ := de.Type()
		if typ.IsDir() {
			if !w.skipDir(name, string(buf)) {
				sub = append(sub, dirTask{owner: t.owner, abs: string(buf), rel: rel})
			}
			continue
		}
		if !typ.IsRegular() && typ&fs.ModeSymlink == 0 {
			continue
		}
		id, mode, err := statAt(f, t.abs, name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // dangling link
			}
			return nil, nil, err
		}
		if !mode.IsRegular() {
			continue
		}
		ff := foundFile{owner: t.owner, entry: artifacts.ManifestEntry{Path: rel, Size: id.Size, Exec: mode&0o100 != 0}}
		w.memo.mu.RLock()
		e, ok := w.memo.m[string(buf)]
		w.memo.mu.RUnlock()
		if ok && e.id == id {
			ff.entry.Digest = e.digest
		} else {
			ff.miss, ff.path = true, string(buf)
		}
		files = append(files, ff)
	}
	return sub, files, nil
}
