package cache

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pipeml/pipe/artifacts"
)

func TestHasherFieldsAreDelimited(t *testing.T) {
	a, b := NewHasher(), NewHasher()
	a.String("x", "ab")
	a.String("y", "c")
	b.String("x", "a")
	b.String("y", "bc")
	if a.Sum() == b.Sum() {
		t.Error("different field values hash the same")
	}
	c, d := NewHasher(), NewHasher()
	c.String("k", "1")
	d.Bytes("k", []byte("1"))
	if c.Sum() == d.Sum() {
		t.Error("fields of different types hash the same")
	}
}

func TestPutFileAndVerify(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "out.txt")
	os.WriteFile(src, []byte("hello"), 0o644)
	d, n, err := c.PutFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if d != artifacts.DigestBytes([]byte("hello")) || n != 5 {
		t.Fatalf("PutFile = %s, %d", d, n)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Error("PutFile left the source in place")
	}
	if filepath.Base(filepath.Dir(c.ObjectPath(d))) != string(d[:2]) {
		t.Error("objects are not fanned out by their first two hex digits")
	}
	if err := c.Verify(d); err != nil {
		t.Fatal(err)
	}
	// Corrupt it: Verify and Open both detect it, and drop the object.
	p := c.ObjectPath(d)
	os.Chmod(p, 0o644)
	os.WriteFile(p, []byte("jello"), 0o444)
	r, err := c.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(r)
	r.Close()
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("reading a corrupt object: %v, want ErrCorrupt", err)
	}
	if c.Has(d) {
		t.Error("corrupt object was not removed")
	}
	if err := c.Verify(d); !errors.Is(err, ErrNotFound) {
		t.Errorf("Verify after removal: %v, want ErrNotFound", err)
	}
}

func TestActionsAndGC(t *testing.T) {
	dir := t.TempDir()
	c, _ := Open(dir)
	live, _ := c.PutBytes([]byte("live"))
	dead, _ := c.PutBytes([]byte("dead"))
	c.PutAction(keyOf("live"), &Action{Outputs: []artifacts.Artifact{{Name: "o", Digest: live}}})
	c.PutAction(keyOf("dead"), &Action{Outputs: []artifacts.Artifact{{Name: "o", Digest: dead}}})
	if _, err := c.GetAction(keyOf("nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetAction of a missing key: %v", err)
	}
	st, err := c.GC(Live{Actions: map[string]bool{keyOf("live"): true}})
	if err != nil {
		t.Fatal(err)
	}
	if st.ActionsRemoved != 1 || st.ObjectsRemoved != 1 || st.BytesFreed == 0 {
		t.Errorf("gc stats = %+v", st)
	}
	if !c.Has(live) || c.Has(dead) {
		t.Error("gc kept the wrong objects")
	}
	if _, err := c.GetAction(keyOf("live")); err != nil {
		t.Errorf("live action removed: %v", err)
	}
}

func keyOf(s string) string { return string(artifacts.DigestBytes([]byte(s))) }

func TestStatMemo(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	os.WriteFile(f, []byte("one"), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(f, old, old)
	m := LoadStatMemo(filepath.Join(dir, "memo"))
	d1, _, err := m.HashFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(); err != nil {
		t.Fatal(err)
	}
	m2 := LoadStatMemo(filepath.Join(dir, "memo"))
	fi, _ := os.Stat(f)
	if d, ok := m2.lookup(f, fi); !ok || d != d1 {
		t.Fatal("saved memo does not know the file")
	}
	// Same size, same mtime, new content: ctime still changes.
	os.WriteFile(f, []byte("two"), 0o644)
	os.Chtimes(f, old, old)
	d2, _, _ := m2.HashFile(f)
	if d2 == d1 || d2 != artifacts.DigestBytes([]byte("two")) {
		t.Error("memo returned a stale digest")
	}
	// A file modified just now is not memoised.
	g := filepath.Join(dir, "g")
	os.WriteFile(g, []byte("fresh"), 0o644)
	m2.HashFile(g)
	gi, _ := os.Stat(g)
	if _, ok := m2.lookup(g, gi); ok {
		t.Error("a file modified within the racy window was memoised")
	}
}

func TestItemIndexRoundTrip(t *testing.T) {
	c, _ := Open(t.TempDir())
	ix := c.ItemIndex("kind\x00stage")
	ix.Put(keyOf("a"), ItemResult{Digest: artifacts.DigestBytes([]byte("x")), Size: 1, Data: []byte("x")})
	ix.Put(keyOf("b"), ItemResult{Digest: keyDigest("big"), Size: 4096})
	if err := ix.Save(); err != nil {
		t.Fatal(err)
	}
	ix2 := c.ItemIndex("kind\x00stage")
	a, ok := ix2.Get(keyOf("a"))
	if !ok || string(a.Data) != "x" || a.Size != 1 {
		t.Errorf("inline entry = %+v", a)
	}
	b, ok := ix2.Get(keyOf("b"))
	if !ok || b.Data != nil || b.Size != 4096 {
		t.Errorf("object entry = %+v", b)
	}
	if c.ItemIndex("other").Len() != 0 {
		t.Error("indexes are not separate")
	}
}

func keyDigest(s string) artifacts.Digest { return artifacts.DigestBytes([]byte(s)) }

// TestJournals: the stat memo and item indexes append what changed, later
// lines win, a torn last line is ignored, and deletions rewrite the file.
func TestJournals(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	var files []string
	for i := range 3 {
		f := filepath.Join(dir, string(rune('a'+i)))
		os.WriteFile(f, []byte{byte(i)}, 0o644)
		os.Chtimes(f, old, old)
		files = append(files, f)
	}
	memoPath := filepath.Join(dir, "memo")
	m := LoadStatMemo(memoPath)
	m.HashFile(files[0])
	m.Save()
	size1 := fileSize(t, memoPath)
	m.HashFile(files[1])
	m.Save()
	if fileSize(t, memoPath) <= size1 {
		t.Fatal("second save did not append")
	}
	// A torn line at the end is ignored.
	f, _ := os.OpenFile(memoPath, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("1 2 3 4 5 " + string(artifacts.DigestBytes(nil)) + " " + files[2])
	f.Close()
	m2 := LoadStatMemo(memoPath)
	if len(m2.m) != 2 {
		t.Errorf("memo has %d entries, want 2", len(m2.m))
	}

	c, _ := Open(filepath.Join(dir, "cache"))
	ix := c.ItemIndex("s")
	ix.Put(keyOf("1"), ItemResult{Digest: keyDigest("1"), Size: 1, Data: []byte("1")})
	ix.Save()
	ix.Put(keyOf("1"), ItemResult{Digest: keyDigest("one"), Size: 3, Data: []byte("one")})
	ix.Put(keyOf("2"), ItemResult{Digest: keyDigest("2"), Size: 1, Data: []byte("2")})
	ix.Save()
	ix2 := c.ItemIndex("s")
	if r, _ := ix2.Get(keyOf("1")); string(r.Data) != "one" || ix2.Len() != 2 {
		t.Errorf("reloaded index: %q, %d entries", r.Data, ix2.Len())
	}
	if ix2.fileLines != 3 {
		t.Errorf("index file has %d lines, want 3 (appended)", ix2.fileLines)
	}
	ix2.Delete(keyOf("2"))
	ix2.Save()
	ix3 := c.ItemIndex("s")
	if ix3.Len() != 1 || ix3.fileLines != 1 {
		t.Errorf("after delete: %d entries, %d lines, want 1 and 1", ix3.Len(), ix3.fileLines)
	}
}

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestFolderDigestSkipsVCSAndWorkspace checks that a folder input's digest
// ignores version-control metadata and the folders in SkipDirs (the
// workspace), and still sees every other change.
func TestFolderDigestSkipsVCSAndWorkspace(t *testing.T) {
	root := t.TempDir()
	write := func(rel, data string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("main.go", "package main")
	write(".git/HEAD", "ref: refs/heads/main")
	write(".pipe/statmemo", "x")
	m := LoadStatMemo(filepath.Join(t.TempDir(), "memo"))
	m.SkipDirs = []string{filepath.Join(root, ".pipe")}
	digest := func() artifacts.Digest {
		t.Helper()
		ds, err := m.HashPaths(t.Context(), []string{root}, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ds[0].Manifest.Entries {
			if strings.HasPrefix(e.Path, ".git/") || strings.HasPrefix(e.Path, ".pipe/") {
				t.Errorf("manifest holds %s", e.Path)
			}
		}
		return ds[0].Digest
	}
	d0 := digest()
	write(".git/HEAD", "ref: refs/heads/other")
	write(".git/objects/ab/cdef", "blob")
	write(".pipe/statmemo", "y")
	if d := digest(); d != d0 {
		t.Error("a change under .git or the workspace changed the folder digest")
	}
	write("sub/.gitignore", "*.o")
	if d := digest(); d == d0 {
		t.Error("a new file did not change the folder digest")
	}
}

// TestStatMemoPrunesDeletedFiles: hashing a folder drops the memo entries
// of its files that are gone, keeps those of files it still has, and
// leaves alone entries under folders the walk skips.
func TestStatMemoPrunesDeletedFiles(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "data")
	old := time.Now().Add(-time.Hour)
	for _, name := range []string{"a", "b", "sub/c", ".git/HEAD", "skip/d"} {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(name), 0o644)
		os.Chtimes(p, old, old)
	}
	m := LoadStatMemo(filepath.Join(dir, "memo"))
	m.SkipDirs = []string{filepath.Join(root, "skip")}
	// Entries the walk never records, put there by hashing the files alone.
	for _, name := range []string{".git/HEAD", "skip/d"} {
		if _, _, err := m.HashFile(filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.HashPaths(t.Context(), []string{root}, 2); err != nil {
		t.Fatal(err)
	}
	if len(m.m) != 5 {
		t.Fatalf("memo holds %d entries, want 5", len(m.m))
	}
	os.Remove(filepath.Join(root, "b"))
	os.RemoveAll(filepath.Join(root, "sub"))
	if _, err := m.HashPaths(t.Context(), []string{root}, 2); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m.m {
		rel, _ := filepath.Rel(root, k)
		keys = append(keys, rel)
	}
	sort.Strings(keys)
	if got, want := strings.Join(keys, " "), ".git/HEAD a skip/d"; got != want {
		t.Errorf("memo after deletions: %s, want %s", got, want)
	}
	if err := m.Save(); err != nil {
		t.Fatal(err)
	}
	if n := len(LoadStatMemo(filepath.Join(dir, "memo")).m); n != 3 {
		t.Errorf("saved memo holds %d entries, want 3", n)
	}
}
