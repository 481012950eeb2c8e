package hub

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const testCommit = "0123456789abcdef0123456789abcdef01234567"

// fakeHub serves the hub's model API and file resolution from a map of
// files, as huggingface.co does: LFS files (*.safetensors) redirect to a
// storage URL with X-Linked-Etag (their sha256) and X-Linked-Size on the
// redirect; other files answer directly with their git blob sha1 as ETag.
type fakeHub struct {
	files    map[string][]byte
	token    string
	cutAfter int64 // the first storage GET sends only this many bytes
	corrupt  bool  // storage serves a flipped byte
	mu       sync.Mutex
	ranges   []string
	requests int
}

func isLFS(name string) bool { return strings.HasSuffix(name, ".safetensors") }

func gitSHA1(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (h *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.requests++
	h.mu.Unlock()
	const repo = "Org/Model"
	p := r.URL.Path
	if !strings.HasPrefix(p, "/cdn/") && h.token != "" && r.Header.Get("Authorization") != "Bearer "+h.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	switch {
	case p == "/api/models/"+repo+"/revision/main" || p == "/api/models/"+repo+"/revision/"+testCommit:
		var sib []map[string]string
		for name := range h.files {
			sib = append(sib, map[string]string{"rfilename": name})
		}
		slices.SortFunc(sib, func(a, b map[string]string) int { return strings.Compare(a["rfilename"], b["rfilename"]) })
		json.NewEncoder(w).Encode(map[string]any{"id": repo, "sha": testCommit, "siblings": sib})
	case strings.HasPrefix(p, "/"+repo+"/resolve/"+testCommit+"/"):
		name := strings.TrimPrefix(p, "/"+repo+"/resolve/"+testCommit+"/")
		data, ok := h.files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Repo-Commit", testCommit)
		if isLFS(name) {
			w.Header().Set("X-Linked-Etag", `"`+sha256hex(data)+`"`)
			w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
			w.Header().Set("Location", "/cdn/"+name)
			w.WriteHeader(http.StatusFound)
			return
		}
		w.Header().Set("ETag", `"`+gitSHA1(data)+`"`)
		http.ServeContent(w, r, name, zeroTime, bytes.NewReader(data))
	case strings.HasPrefix(p, "/cdn/"):
		name := strings.TrimPrefix(p, "/cdn/")
		data := slices.Clone(h.files[name])
		h.mu.Lock()
		h.ranges = append(h.ranges, r.Header.Get("Range"))
		cut := h.cutAfter
		h.cutAfter = 0
		h.mu.Unlock()
		if h.corrupt {
			data[len(data)/2] ^= 0xff
		}
		if cut > 0 && r.Method == http.MethodGet {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusOK)
			w.Write(data[:cut])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // cut the connection mid-body
		}
		http.ServeContent(w, r, name, zeroTime, bytes.NewReader(data))
	default:
		http.NotFound(w, r)
	}
}

var zeroTime time.Time

func testFiles() map[string][]byte {
	weights := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	return map[string][]byte{
		"config.json":       []byte(`{"model_type":"qwen2"}`),
		"model.safetensors": weights,
		"tokenizer.json":    []byte(`{"model":{}}`),
		"merges.txt":        []byte("a b\n"),
		"pytorch_model.bin": []byte("not wanted"),
		"README.md":         []byte("# readme"),
	}
}

func setup(t *testing.T, h *fakeHub) (*httptest.Server, Options) {
	t.Helper()
	for _, k := range []string{"HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT", "HF_HUB_CACHE"} {
		t.Setenv(k, "")
	}
	t.Setenv("HF_HOME", t.TempDir())
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, Options{Endpoint: srv.URL, CacheDir: t.TempDir()}
}

func TestDownloadLayout(t *testing.T) {
	h := &fakeHub{files: testFiles()}
	_, opts := setup(t, h)
	var last = map[string]Progress{}
	opts.Progress = func(p Progress) { last[p.File] = p }
	dir, err := Download(t.Context(), "Org/Model", opts)
	if err != nil {
		t.Fatal(err)
	}
	root := RepoFolder(opts.CacheDir, "Org/Model")
	if want := filepath.Join(root, "snapshots", testCommit); dir != want {
		t.Errorf("dir = %s, want %s", dir, want)
	}
	if ref, _ := os.ReadFile(filepath.Join(root, "refs", "main")); string(ref) != testCommit {
		t.Errorf("refs/main = %q", ref)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"config.json", "merges.txt", "model.safetensors", "tokenizer.json"}; !slices.Equal(names, want) {
		t.Errorf("snapshot files = %v, want %v", names, want)
	}
	for _, name := range names {
		data := h.files[name]
		target, err := os.Readlink(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s is not a symlink: %v", name, err)
		}
		etag := gitSHA1(data)
		if isLFS(name) {
			etag = sha256hex(data)
		}
		if want := filepath.Join("..", "..", "blobs", etag); target != want {
			t.Errorf("%s -> %s, want %s", name, target, want)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, data) {
			t.Errorf("%s content differs", name)
		}
	}
	if p := last["model.safetensors"]; p.Done != 65536 || p.Total != 65536 {
		t.Errorf("last progress = %+v", p)
	}
	// Resolve now finds the complete snapshot without the network.
	before := h.requests
	got, err := Resolve(t.Context(), "Org/Model", opts)
	if err != nil || got != dir || h.requests != before {
		t.Errorf("Resolve = %s, %v after %d requests", got, err, h.requests-before)
	}
	// So does offline mode, also by environment.
	t.Setenv("HF_HUB_OFFLINE", "1")
	opts.Endpoint = "http://127.0.0.1:1"
	if got, err := Download(t.Context(), "Org/Model", opts); err != nil || got != dir {
		t.Errorf("offline Download = %s, %v", got, err)
	}
}

func TestOfflineMissing(t *testing.T) {
	_, opts := setup(t, &fakeHub{files: testFiles()})
	opts.Offline = true
	_, err := Resolve(t.Context(), "Org/Other", opts)
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "Org/Other") {
		t.Errorf("Resolve offline = %v", err)
	}
}

func TestResumeAfterCut(t *testing.T) {
	h := &fakeHub{files: testFiles(), cutAfter: 10000}
	_, opts := setup(t, h)
	_, err := Download(t.Context(), "Org/Model", opts)
	if err == nil || !strings.Contains(err.Error(), "resume") {
		t.Fatalf("first Download = %v, want an interrupted download", err)
	}
	blob := filepath.Join(RepoFolder(opts.CacheDir, "Org/Model"), "blobs", sha256hex(h.files["model.safetensors"]))
	if fi, err := os.Stat(blob + ".incomplete"); err != nil || fi.Size() != 10000 {
		t.Fatalf("partial blob: %v %v", fi, err)
	}
	dir, err := Download(t.Context(), "Org/Model", opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "model.safetensors")); !bytes.Equal(got, h.files["model.safetensors"]) {
		t.Error("resumed file differs")
	}
	if want := []string{"", "bytes=10000-"}; !slices.Equal(h.ranges, want) {
		t.Errorf("storage Range headers = %q, want %q", h.ranges, want)
	}
	if _, err := os.Stat(blob + ".incomplete"); !os.IsNotExist(err) {
		t.Error(".incomplete left behind")
	}
}

func TestChecksumMismatch(t *testing.T) {
	h := &fakeHub{files: testFiles(), corrupt: true}
	_, opts := setup(t, h)
	_, err := Download(t.Context(), "Org/Model", opts)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("Download = %v, want a checksum mismatch", err)
	}
	blobs, _ := os.ReadDir(filepath.Join(RepoFolder(opts.CacheDir, "Org/Model"), "blobs"))
	for _, b := range blobs {
		if strings.HasPrefix(b.Name(), sha256hex(h.files["model.safetensors"])) {
			t.Errorf("corrupt blob kept: %s", b.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(RepoFolder(opts.CacheDir, "Org/Model"), "snapshots", testCommit, "model.safetensors")); err == nil {
		t.Error("snapshot links the corrupt file")
	}
}

func TestTokenRequired(t *testing.T) {
	h := &fakeHub{files: testFiles(), token: "hf_secret"}
	_, opts := setup(t, h)
	_, err := Download(t.Context(), "Org/Model", opts)
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Fatalf("Download without token = %v", err)
	}
	t.Setenv("HF_TOKEN", "hf_secret")
	if _, err := Download(context.Background(), "Org/Model", opts); err != nil {
		t.Fatalf("Download with HF_TOKEN: %v", err)
	}
}

func TestCacheDirFromEnv(t *testing.T) {
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_HOME", "/x/hf")
	if got := CacheDir(); got != filepath.Join("/x/hf", "hub") {
		t.Errorf("CacheDir with HF_HOME = %s", got)
	}
	t.Setenv("HF_HUB_CACHE", "/y/cache")
	if got := CacheDir(); got != "/y/cache" {
		t.Errorf("CacheDir with HF_HUB_CACHE = %s", got)
	}
	if got := RepoFolder("/c", "Qwen/Qwen2.5-Coder-3B-Instruct"); got != "/c/models--Qwen--Qwen2.5-Coder-3B-Instruct" {
		t.Errorf("RepoFolder = %s", got)
	}
	for _, bad := range []string{"../x", "a/b/c", "", "a/.."} {
		if IsRepoID(bad) {
			t.Errorf("IsRepoID(%q) = true", bad)
		}
	}
}
