package cache

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pipeml/pipe/artifacts"
	"github.com/zeebo/blake3"
)

// ErrNotFound is returned when an entry or object is not in the cache.
var ErrNotFound = errors.New("not in cache")

// ErrCorrupt is returned when an object's bytes no longer match its
// digest. The object has been removed by the time the error is returned.
var ErrCorrupt = errors.New("corrupt cache object")

// Cache is a content-addressed store in one folder. It is safe for
// concurrent use by several goroutines and several processes: every write
// is atomic, and an entry is only ever replaced by one with the same
// content.
type Cache struct {
	dir string
}

// Open opens (creating it if needed) the cache in dir.
func Open(dir string) (*Cache, error) {
	for _, sub := range []string{"objects", "actions", "items", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o777); err != nil {
			return nil, err
		}
	}
	return &Cache{dir: dir}, nil
}

// Dir is the cache folder.
func (c *Cache) Dir() string { return c.dir }

// ObjectPath is where the object with digest d is (or would be) stored.
func (c *Cache) ObjectPath(d artifacts.Digest) string {
	return filepath.Join(c.dir, "objects", string(d[:2]), string(d))
}

func (c *Cache) actionPath(key string) string {
	return filepath.Join(c.dir, "actions", key[:2], key)
}

// TempFile creates a temporary file inside the cache folder, on the same
// file system as the objects, so that it can be renamed into place.
func (c *Cache) TempFile() (*os.File, error) {
	return os.CreateTemp(filepath.Join(c.dir, "tmp"), "obj-*")
}

// Has reports whether object d exists (without verifying it).
func (c *Cache) Has(d artifacts.Digest) bool {
	_, err := os.Stat(c.ObjectPath(d))
	return err == nil
}

// PutFile moves the file at path into the store (renaming it when the
// file system allows, copying otherwise) and returns its digest and size.
// The file at path no longer exists afterwards.
func (c *Cache) PutFile(path string) (artifacts.Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	d, n, err := artifacts.DigestReader(f)
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return "", 0, err
	}
	dst := c.ObjectPath(d)
	if fi, err := os.Stat(dst); err == nil && fi.Size() == n {
		return d, n, os.Remove(path)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o777); err != nil {
		return "", 0, err
	}
	if err := os.Chmod(path, 0o444); err != nil {
		return "", 0, err
	}
	if err := os.Rename(path, dst); err != nil {
		// Another file system: copy through a temporary file.
		if err := c.putReader(d, path); err != nil {
			return "", 0, err
		}
		return d, n, os.Remove(path)
	}
	return d, n, nil
}

// putReader copies the file at src into the object d atomically.
func (c *Cache) putReader(d artifacts.Digest, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return c.writeAtomic(c.ObjectPath(d), in, 0o444)
}

// PutBytes stores b and returns its digest.
func (c *Cache) PutBytes(b []byte) (artifacts.Digest, error) {
	d := artifacts.DigestBytes(b)
	dst := c.ObjectPath(d)
	if fi, err := os.Stat(dst); err == nil && fi.Size() == int64(len(b)) {
		return d, nil
	}
	return d, c.writeAtomic(dst, bytes.NewReader(b), 0o444)
}

// writeAtomic writes r to dst through a temporary file that is fsynced
// and renamed, so that dst is either absent or complete.
func (c *Cache) writeAtomic(dst string, r io.Reader, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o777); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, mode)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// WriteFileAtomic writes data to path atomically (temporary file, fsync,
// rename). The workspace uses it for its state files.
func WriteFileAtomic(path string, data []byte) error {
	c := &Cache{}
	return c.writeAtomic(path, bytes.NewReader(data), 0o644)
}

// Verify re-hashes object d. A missing object gives ErrNotFound; one whose
// bytes do not match is removed and gives ErrCorrupt.
func (c *Cache) Verify(d artifacts.Digest) error {
	p := c.ObjectPath(d)
	got, _, err := artifacts.DigestFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("object %s: %w", d.Short(), ErrNotFound)
	}
	if err != nil {
		return err
	}
	if got != d {
		os.Remove(p)
		return fmt.Errorf("object %s has digest %s: %w", d.Short(), got.Short(), ErrCorrupt)
	}
	return nil
}

// Open returns a reader of object d that verifies the digest when it
// reaches the end: the final Read returns ErrCorrupt (and the object is
// removed) if the bytes do not match.
func (c *Cache) Open(d artifacts.Digest) (io.ReadCloser, error) {
	f, err := os.Open(c.ObjectPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("object %s: %w", d.Short(), ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &verifyingReader{f: f, h: blake3.New(), want: d, path: f.Name()}, nil
}

type verifyingReader struct {
	f    *os.File
	h    *blake3.Hasher
	want artifacts.Digest
	path string
	done bool
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF && !v.done {
		v.done = true
		got := artifacts.Digest(hex.EncodeToString(v.h.Sum(nil)))
		if got != v.want {
			os.Remove(v.path)
			return n, fmt.Errorf("object %s has digest %s: %w", v.want.Short(), got.Short(), ErrCorrupt)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.f.Close() }

// ReadObject returns the verified bytes of object d.
func (c *Cache) ReadObject(d artifacts.Digest) ([]byte, error) {
	r, err := c.Open(d)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// ReadManifest returns the verified manifest stored as object d.
func (c *Cache) ReadManifest(d artifacts.Digest) (*artifacts.Manifest, error) {
	b, err := c.ReadObject(d)
	if err != nil {
		return nil, err
	}
	m, err := artifacts.ParseManifest(bytes.NewReader(b))
	if err != nil {
		os.Remove(c.ObjectPath(d))
		return nil, fmt.Errorf("object %s: %v: %w", d.Short(), err, ErrCorrupt)
	}
	return m, nil
}

// PutDir moves every regular file under dir into the store and stores the
// folder's manifest; it returns the manifest digest. Symbolic links and
// other special files are an error: outputs must be plain files.
func (c *Cache) PutDir(dir string) (artifacts.Digest, *artifacts.Manifest, error) {
	m := &artifacts.Manifest{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			return nil
		}
		if !de.Type().IsRegular() {
			return fmt.Errorf("output %s: %s is not a regular file", dir, p)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		d, n, err := c.PutFile(p)
		if err != nil {
			return err
		}
		m.Entries = append(m.Entries, artifacts.ManifestEntry{
			Path: filepath.ToSlash(rel), Digest: d, Size: n, Exec: fi.Mode()&0o100 != 0,
		})
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	m.Sort()
	b, err := m.Marshal()
	if err != nil {
		return "", nil, err
	}
	d, err := c.PutBytes(b)
	return d, m, err
}

// Action is what an action key maps to: the outputs a stage produced and
// whatever the engine wants to remember about the run that made them.
type Action struct {
	Outputs []artifacts.Artifact `json:"outputs"`
	// Meta is opaque to the cache.
	Meta json.RawMessage `json:"meta,omitempty"`
	// Created is when the entry was written.
	Created time.Time `json:"created"`
}

// GetAction returns the entry of key, or ErrNotFound. It does not verify
// the objects the entry refers to; CheckArtifact does.
func (c *Cache) GetAction(key string) (*Action, error) {
	b, err := os.ReadFile(c.actionPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var a Action
	if err := json.Unmarshal(b, &a); err != nil {
		os.Remove(c.actionPath(key))
		return nil, fmt.Errorf("action %s: %v: %w", key[:12], err, ErrCorrupt)
	}
	c.touch(c.actionPath(key))
	return &a, nil
}

// PutAction records the entry of key. Call it only after every object the
// entry refers to has been stored.
func (c *Cache) PutAction(key string, a *Action) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return c.writeAtomic(c.actionPath(key), bytes.NewReader(b), 0o444)
}

// DeleteAction removes the entry of key.
func (c *Cache) DeleteAction(key string) error {
	err := os.Remove(c.actionPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// touch marks a file as used (for gc) at most once an hour, as the go
// command's cache does, so that hits do not cost a write each.
func (c *Cache) touch(p string) {
	now := time.Now()
	if fi, err := os.Stat(p); err == nil && now.Sub(fi.ModTime()) > time.Hour {
		os.Chtimes(p, now, now)
	}
}

// CleanTemp removes temporary files left in the cache by a killed process.
// Call it only while holding the workspace lock.
func (c *Cache) CleanTemp() error {
	tmp := filepath.Join(c.dir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	return os.MkdirAll(tmp, 0o777)
}

// RandomID returns a random hex identifier.
func RandomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
