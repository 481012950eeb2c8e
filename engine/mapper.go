package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/zeebo/blake3"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/cache"
	"github.com/pipeml/pipe/stages"
)

// maxReduceAttempts bounds how often Reduce is retried after cached item
// results turned out corrupt or missing.
const maxReduceAttempts = 3

// itemBaseKey hashes what every item's result depends on besides the
// item itself: kind, version, parameters, extra key parts, the inputs that
// hold no item files (shared inputs, such as a rules file), and outputs
// referenced from parameters.
func itemBaseKey(n *Node, ki *keyInfo, itemFiles []string) string {
	h := cache.NewHasher()
	h.String("item-base", n.Def.Name)
	h.String("version", n.Def.Version)
	for _, k := range sortedKeys(n.ParamsJSON) {
		h.Bytes("param:"+k, n.ParamsJSON[k])
	}
	for _, k := range sortedKeys(ki.parts.Extra) {
		h.String("extra:"+k, ki.parts.Extra[k])
	}
	for _, in := range ki.parts.Inputs {
		if holdsItems(in.Path, itemFiles) {
			continue
		}
		h.String("shared:"+in.Name, filepath.Base(in.Path))
		h.String("digest", string(in.Digest))
	}
	for _, k := range sortedKeys(ki.parts.Refs) {
		h.String("ref:"+k, string(ki.parts.Refs[k]))
	}
	return h.Sum()
}

// holdsItems reports whether path is, or contains, one of the sorted
// files.
func holdsItems(path string, sorted []string) bool {
	i := sort.SearchStrings(sorted, path)
	if i < len(sorted) && sorted[i] == path {
		return true
	}
	prefix := path + string(filepath.Separator)
	j := sort.SearchStrings(sorted, prefix)
	return j < len(sorted) && strings.HasPrefix(sorted[j], prefix)
}

// runMapper drives a Mapper with a per-item cache: items whose key (base
// key, item key, item file digests) is in the stage's item index are
// reused, the others are mapped in parallel, and Reduce gets every result
// in Key order. With fresh set (--force, PIPE_CACHEVERIFY) every item is
// mapped again.
func (r *run) runMapper(ctx context.Context, n *Node, m stages.Mapper, env *stages.Env, ki *keyInfo, fresh bool) (*ItemCounts, error) {
	ws := r.plan.Workspace
	items, err := m.Items(ctx, env)
	if err != nil {
		return nil, err
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
	var files []string
	for i, it := range items {
		if i > 0 && it.Key == items[i-1].Key {
			return nil, fmt.Errorf("two items have the key %q; item keys must be unique", it.Key)
		}
		for j, f := range it.Files {
			if !filepath.IsAbs(f) {
				f = filepath.Join(r.plan.Root, f)
				it.Files[j] = f
			}
			files = append(files, f)
		}
	}
	files = dedup(files)
	sort.Strings(files)
	// Most item files were hashed a moment ago for the action key: take
	// their digests from the input manifests and hash only the others.
	digests := make(map[string]artifacts.Digest, len(files))
	for _, in := range ki.parts.Inputs {
		if m := ki.manifests[in.Path]; m != nil {
			for _, e := range m.Entries {
				digests[filepath.Join(in.Path, filepath.FromSlash(e.Path))] = e.Digest
			}
		} else if !in.Dir {
			digests[in.Path] = in.Digest
		}
	}
	var rest []string
	for _, f := range files {
		if _, ok := digests[f]; !ok {
			rest = append(rest, f)
		}
	}
	if len(rest) > 0 {
		ds, err := ws.Memo.HashPaths(ctx, rest, r.parallelism)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			digests[d.Path] = d.Digest
		}
	}
	base := itemBaseKey(n, ki, files)
	// One small hash per item: base key, then the length-prefixed item
	// key, then each file's digest (fixed length).
	keys := make([]string, len(items))
	buf := make([]byte, 0, 256)
	for i, it := range items {
		buf = append(buf[:0], base...)
		buf = binary.AppendUvarint(buf, uint64(len(it.Key)))
		buf = append(buf, it.Key...)
		buf = binary.AppendUvarint(buf, uint64(len(it.Files)))
		for _, f := range it.Files {
			buf = append(buf, digests[f]...)
		}
		sum := blake3.Sum256(buf)
		keys[i] = hex.EncodeToString(sum[:])
	}
	ix := ws.Cache.ItemIndex(n.Def.Name + "\x00" + n.Name)
	counts := &ItemCounts{Total: len(items)}
	results := make([]cache.ItemResult, len(items))
	var todo []int
	for i := range items {
		if res, ok := ix.Get(keys[i]); ok && !fresh {
			results[i] = res
			counts.Reused++
		} else {
			todo = append(todo, i)
		}
	}
	var done atomic.Int64
	var mu sync.Mutex // guards counts while items are mapped
	done.Store(int64(counts.Reused))
	env.Progress(int(done.Load()), len(items))
	mapAll := func(todo []int) error {
		return r.mapItems(ctx, m, env, items, todo, func(i int, res cache.ItemResult) {
			results[i] = res
			ix.Put(keys[i], res)
			env.Progress(int(done.Add(1)), len(items))
			mu.Lock()
			counts.Processed++
			mu.Unlock()
		})
	}
	if err := mapAll(todo); err != nil {
		ix.Save()
		return counts, err
	}
	for attempt := 1; ; attempt++ {
		var bad sync.Map
		rs := make([]stages.ItemResult, len(items))
		for i := range items {
			rs[i] = stages.ItemResult{Item: items[i], Open: r.itemOpener(i, results[i], &bad)}
		}
		err := m.Reduce(ctx, env, rs)
		var badIdx []int
		bad.Range(func(k, _ any) bool { badIdx = append(badIdx, k.(int)); return true })
		if err == nil && len(badIdx) == 0 {
			break
		}
		if len(badIdx) == 0 || attempt == maxReduceAttempts || ctx.Err() != nil {
			ix.Save()
			if err == nil {
				err = fmt.Errorf("cached item results keep failing verification")
			}
			return counts, err
		}
		sort.Ints(badIdx)
		env.Logger.Warn("corrupt or missing item results; recomputing them", "items", len(badIdx))
		for _, i := range badIdx {
			ix.Delete(keys[i])
			counts.Reused--
		}
		if err := os.RemoveAll(env.OutDir); err != nil {
			return counts, err
		}
		if err := os.MkdirAll(env.OutDir, 0o777); err != nil {
			return counts, err
		}
		env.Summary = map[string]any{}
		if err := mapAll(badIdx); err != nil {
			ix.Save()
			return counts, err
		}
	}
	current := make(map[string]bool, len(keys))
	for _, k := range keys {
		current[k] = true
	}
	ix.Retain(func(k string) bool { return current[k] })
	if err := ix.Save(); err != nil {
		return counts, err
	}
	return counts, nil
}

// itemOpener opens a cached item result, noting item i in bad when the
// object is missing or corrupt.
func (r *run) itemOpener(i int, res cache.ItemResult, bad *sync.Map) func() (io.ReadCloser, error) {
	c := r.plan.Workspace.Cache
	return func() (io.ReadCloser, error) {
		if res.Data != nil {
			if artifacts.DigestBytes(res.Data) != res.Digest {
				bad.Store(i, true)
				return nil, fmt.Errorf("item result %s: %w", res.Digest.Short(), cache.ErrCorrupt)
			}
			return io.NopCloser(bytes.NewReader(res.Data)), nil
		}
		rc, err := c.Open(res.Digest)
		if err != nil {
			if errors.Is(err, cache.ErrNotFound) || errors.Is(err, cache.ErrCorrupt) {
				bad.Store(i, true)
			}
			return nil, err
		}
		return &noteCorrupt{ReadCloser: rc, i: i, bad: bad}, nil
	}
}

type noteCorrupt struct {
	io.ReadCloser
	i   int
	bad *sync.Map
}

func (n *noteCorrupt) Read(p []byte) (int, error) {
	k, err := n.ReadCloser.Read(p)
	if err != nil && errors.Is(err, cache.ErrCorrupt) {
		n.bad.Store(n.i, true)
	}
	return k, err
}

// maxItemErrors bounds the item failures reported for one stage.
const maxItemErrors = 5

// mapItems runs Map for the items at indices todo on up to parallelism
// goroutines, storing each result in the cache before calling done. A
// failing item does not stop the others, so that their results are cached
// for the next run; the failures are returned together.
func (r *run) mapItems(ctx context.Context, m stages.Mapper, env *stages.Env, items []stages.Item, todo []int, done func(int, cache.ItemResult)) error {
	if len(todo) == 0 {
		return nil
	}
	c := r.plan.Workspace.Cache
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	failed := 0
	for range min(r.parallelism, len(todo)) {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= len(todo) || ctx.Err() != nil {
					return
				}
				i := todo[k]
				res, err := mapOne(ctx, c, m, env, items[i])
				if err != nil {
					mu.Lock()
					failed++
					if len(errs) < maxItemErrors {
						errs = append(errs, fmt.Errorf("item %s: %w", items[i].Key, err))
					}
					mu.Unlock()
					continue
				}
				done(i, res)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if failed > len(errs) {
		errs = append(errs, fmt.Errorf("and %d more failed items", failed-len(errs)))
	}
	return errors.Join(errs...)
}

func mapOne(ctx context.Context, c *cache.Cache, m stages.Mapper, env *stages.Env, it stages.Item) (cache.ItemResult, error) {
	w := &spillWriter{c: c}
	defer w.cleanup()
	bw := bufio.NewWriterSize(w, 1<<16)
	err := m.Map(ctx, env, it, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return cache.ItemResult{}, err
	}
	if w.f == nil {
		data := append([]byte{}, w.buf...)
		return cache.ItemResult{Digest: artifacts.DigestBytes(data), Size: int64(len(data)), Data: data}, nil
	}
	name := w.f.Name()
	if err := w.f.Close(); err != nil {
		return cache.ItemResult{}, err
	}
	w.f = nil
	d, size, err := c.PutFile(name)
	if err != nil {
		os.Remove(name)
		return cache.ItemResult{}, err
	}
	return cache.ItemResult{Digest: d, Size: size}, nil
}

// spillWriter keeps an item result in memory while it is small enough to
// be stored inline in the item index, and spills it to a temporary file in
// the cache when it grows larger.
type spillWriter struct {
	c   *cache.Cache
	buf []byte
	f   *os.File
}

func (w *spillWriter) Write(p []byte) (int, error) {
	if w.f == nil && len(w.buf)+len(p) <= cache.InlineMax {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if w.f == nil {
		f, err := w.c.TempFile()
		if err != nil {
			return 0, err
		}
		w.f = f
		if _, err := f.Write(w.buf); err != nil {
			return 0, err
		}
		w.buf = nil
	}
	return w.f.Write(p)
}

func (w *spillWriter) cleanup() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
	}
}
