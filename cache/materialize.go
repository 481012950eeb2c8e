package cache

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pipeml/pipe/artifacts"
)

// CheckArtifact makes sure the objects behind a are present and intact.
// Objects the memo knows unchanged are trusted; others are re-hashed.
// With deep set, every object is re-hashed. A corrupt object is removed
// and reported with ErrCorrupt; a missing one with ErrNotFound.
func (c *Cache) CheckArtifact(a artifacts.Artifact, memo *StatMemo, deep bool) error {
	if !a.Dir {
		return c.checkObject(a.Digest, memo, deep)
	}
	m, err := c.ReadManifest(a.Digest)
	if err != nil {
		return err
	}
	for _, e := range m.Entries {
		if err := c.checkObject(e.Digest, memo, deep); err != nil {
			return fmt.Errorf("%s/%s: %w", a.Name, e.Path, err)
		}
	}
	return nil
}

func (c *Cache) checkObject(d artifacts.Digest, memo *StatMemo, deep bool) error {
	p := c.ObjectPath(d)
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("object %s: %w", d.Short(), ErrNotFound)
	}
	if err != nil {
		return err
	}
	if !deep {
		if got, ok := memo.lookup(p, fi); ok && got == d {
			return nil
		}
	}
	got, _, err := artifacts.DigestFile(p)
	if err != nil {
		return err
	}
	if got != d {
		os.Remove(p) // a new object at p gets a new inode and ctime, so the memo cannot mistake it for this one
		return fmt.Errorf("object %s has digest %s: %w", d.Short(), got.Short(), ErrCorrupt)
	}
	memo.Record(p, fi, d)
	return nil
}

// Materialize makes dest a read-only copy of artifact a: a hard link to
// the object where possible, a copy otherwise. dest is replaced
// atomically for a file; a folder is built next to dest and renamed over
// it. The memo learns the digests of what it creates.
func (c *Cache) Materialize(a artifacts.Artifact, dest string, memo *StatMemo) error {
	if err := os.MkdirAll(filepath.Dir(dest), 0o777); err != nil {
		return err
	}
	tmp := dest + ".tmp-" + RandomID()
	defer os.RemoveAll(tmp)
	if !a.Dir {
		if err := c.linkObject(a.Digest, tmp, false); err != nil {
			return err
		}
	} else {
		m, err := c.ReadManifest(a.Digest)
		if err != nil {
			return err
		}
		if err := os.Mkdir(tmp, 0o777); err != nil {
			return err
		}
		for _, e := range m.Entries {
			p := filepath.Join(tmp, filepath.FromSlash(e.Path))
			if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
				return err
			}
			if err := c.linkObject(e.Digest, p, e.Exec); err != nil {
				return err
			}
		}
	}
	if err := removeAllWritable(dest); err != nil {
		return err
	}
	return os.Rename(tmp, dest)
}

// removeAllWritable removes path even when it holds read-only folders.
func removeAllWritable(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	filepath.WalkDir(path, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.IsDir() {
			os.Chmod(p, 0o777)
		}
		return nil
	})
	return os.RemoveAll(path)
}

func (c *Cache) linkObject(d artifacts.Digest, dest string, exec bool) error {
	src := c.ObjectPath(d)
	if _, err := os.Stat(src); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("object %s: %w", d.Short(), ErrNotFound)
		}
		return err
	}
	if !exec {
		if err := os.Link(src, dest); err == nil {
			return nil
		}
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dest, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	mode := fs.FileMode(0o444)
	if exec {
		mode = 0o555
	}
	return os.Chmod(dest, mode)
}
