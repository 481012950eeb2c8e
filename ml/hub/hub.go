package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the hub's address when HF_ENDPOINT is not set.
const DefaultEndpoint = "https://huggingface.co"

// DefaultPatterns are the files Download fetches when Options.Patterns is
// empty: configuration, tokenizer and safetensors weights (not the
// PyTorch .bin duplicates some repositories also carry).
var DefaultPatterns = []string{"*.json", "*.safetensors", "*.txt", "tokenizer.model"}

// ErrOffline is returned (wrapped) when a repository is not in the cache
// and downloading is not allowed.
var ErrOffline = errors.New("offline mode")

// Progress reports a file's download: Done of Total bytes (Total is -1
// when unknown). Done starts at the size already on disk when resuming.
type Progress struct {
	Repo, File  string
	Done, Total int64
}

// Options configures Resolve and Download. Zero values fall back to the
// environment as huggingface_hub does.
type Options struct {
	// Revision is a branch, tag or commit; default "main".
	Revision string
	// CacheDir overrides the hub cache folder.
	CacheDir string
	// Endpoint overrides HF_ENDPOINT.
	Endpoint string
	// Token overrides HF_TOKEN and the saved token file.
	Token string
	// Offline forbids network access (also set by HF_HUB_OFFLINE=1).
	Offline bool
	// Patterns selects files by base-name glob (path.Match); default
	// DefaultPatterns.
	Patterns []string
	// Client is the HTTP client; default one with no overall timeout.
	Client *http.Client
	// Progress, when set, is called as bytes arrive (from one goroutine).
	Progress func(Progress)
}

func envTrue(name string) bool {
	v := strings.ToLower(os.Getenv(name))
	return v == "1" || v == "true" || v == "yes" || v == "on"
}

// CacheDir returns the Hugging Face hub cache folder from the environment.
func CacheDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("HF_HOME"); d != "" {
		return filepath.Join(d, "hub")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".cache", "huggingface", "hub")
	}
	return filepath.Join(home, ".cache", "huggingface", "hub")
}

func (o *Options) fill() {
	if o.Revision == "" {
		o.Revision = "main"
	}
	if o.CacheDir == "" {
		o.CacheDir = CacheDir()
	}
	if o.Endpoint == "" {
		o.Endpoint = os.Getenv("HF_ENDPOINT")
	}
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint
	}
	o.Endpoint = strings.TrimRight(o.Endpoint, "/")
	if o.Token == "" {
		o.Token = os.Getenv("HF_TOKEN")
	}
	if o.Token == "" {
		home := os.Getenv("HF_HOME")
		if home == "" {
			if h, err := os.UserHomeDir(); err == nil {
				home = filepath.Join(h, ".cache", "huggingface")
			}
		}
		if b, err := os.ReadFile(filepath.Join(home, "token")); err == nil {
			o.Token = strings.TrimSpace(string(b))
		}
	}
	if envTrue("HF_HUB_OFFLINE") {
		o.Offline = true
	}
	if len(o.Patterns) == 0 {
		o.Patterns = DefaultPatterns
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
}

var repoRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$`)
var commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)

// RepoFolder returns the cache folder of a model repository,
// models--<org>--<name>.
func RepoFolder(cacheDir, repo string) string {
	return filepath.Join(cacheDir, "models--"+strings.ReplaceAll(repo, "/", "--"))
}

// IsRepoID reports whether s looks like a hub repository id ("org/name").
func IsRepoID(s string) bool { return repoRe.MatchString(s) && !strings.Contains(s, "..") }

// Resolve returns a local folder for model: model itself when it is an
// existing folder, else the snapshot of the hub repository model in the
// cache when it has config.json and its safetensors weights, else the
// folder Download fills.
func Resolve(ctx context.Context, model string, opts Options) (string, error) {
	if fi, err := os.Stat(model); err == nil && fi.IsDir() {
		return model, nil
	}
	if !IsRepoID(model) {
		return "", fmt.Errorf("%q is neither a folder nor a hub repository id like Qwen/Qwen2.5-Coder-3B-Instruct", model)
	}
	opts.fill()
	if dir, ok := cachedSnapshot(opts.CacheDir, model, opts.Revision); ok && complete(dir) {
		return dir, nil
	}
	return Download(ctx, model, opts)
}

// cachedSnapshot finds the snapshot folder of a revision in the cache.
func cachedSnapshot(cacheDir, repo, revision string) (string, bool) {
	root := RepoFolder(cacheDir, repo)
	commit := revision
	if !commitRe.MatchString(revision) {
		b, err := os.ReadFile(filepath.Join(root, "refs", filepath.FromSlash(revision)))
		if err != nil {
			return "", false
		}
		commit = strings.TrimSpace(string(b))
	}
	dir := filepath.Join(root, "snapshots", commit)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", false
	}
	return dir, true
}

// complete reports whether a snapshot has a config.json and all the
// safetensors weights its index lists (or model.safetensors).
func complete(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return false
	}
	data, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json"))
	if err != nil {
		_, err := os.Stat(filepath.Join(dir, "model.safetensors"))
		return err == nil
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if json.Unmarshal(data, &idx) != nil {
		return false
	}
	for _, shard := range idx.WeightMap {
		if _, err := os.Stat(filepath.Join(dir, shard)); err != nil {
			return false
		}
	}
	return true
}

// repoInfo is the part of /api/models/<repo>/revision/<rev> used here.
type repoInfo struct {
	SHA      string `json:"sha"`
	Siblings []struct {
		RFilename string `json:"rfilename"`
	} `json:"siblings"`
}

// Download fetches the files of a repository revision that match
// opts.Patterns into the cache (skipping blobs already there, resuming
// partial ones) and returns the snapshot folder.
func Download(ctx context.Context, repo string, opts Options) (string, error) {
	opts.fill()
	if !IsRepoID(repo) {
		return "", fmt.Errorf("%q is not a hub repository id like Qwen/Qwen2.5-Coder-3B-Instruct", repo)
	}
	if opts.Offline {
		if dir, ok := cachedSnapshot(opts.CacheDir, repo, opts.Revision); ok {
			return dir, nil
		}
		return "", fmt.Errorf("%s (revision %s) is not in the cache %s and downloading is disabled: %w (unset HF_HUB_OFFLINE or fill the cache)", repo, opts.Revision, opts.CacheDir, ErrOffline)
	}
	infoURL := fmt.Sprintf("%s/api/models/%s/revision/%s", opts.Endpoint, repo, url.PathEscape(opts.Revision))
	var info repoInfo
	if err := getJSON(ctx, opts, infoURL, &info); err != nil {
		return "", fmt.Errorf("%s: %w", repo, err)
	}
	if !commitRe.MatchString(info.SHA) {
		return "", fmt.Errorf("%s: the hub answered commit %q, not a 40-hex sha", repo, info.SHA)
	}
	root := RepoFolder(opts.CacheDir, repo)
	snap := filepath.Join(root, "snapshots", info.SHA)
	var files []string
	for _, s := range info.Siblings {
		if matches(s.RFilename, opts.Patterns) {
			files = append(files, s.RFilename)
		}
	}
	slices.Sort(files)
	if len(files) == 0 {
		return "", fmt.Errorf("%s@%s has no files matching %v", repo, opts.Revision, opts.Patterns)
	}
	for _, f := range files {
		if err := downloadFile(ctx, opts, repo, info.SHA, f, root); err != nil {
			return "", err
		}
	}
	if opts.Revision != info.SHA {
		ref := filepath.Join(root, "refs", filepath.FromSlash(opts.Revision))
		if err := os.MkdirAll(filepath.Dir(ref), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(ref, []byte(info.SHA), 0o644); err != nil {
			return "", err
		}
	}
	return snap, nil
}

func matches(file string, patterns []string) bool {
	base := path.Base(file)
	for _, p := range patterns {
		if ok, _ := path.Match(p, base); ok {
			return true
		}
		if ok, _ := path.Match(p, file); ok {
			return true
		}
	}
	return false
}

// HTTPError is a failed hub request.
type HTTPError struct {
	URL    string
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	hint := ""
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		hint = ": the repository needs authentication or accepted terms; set HF_TOKEN to a token with access"
	case http.StatusNotFound:
		hint = ": no such repository, revision or file"
	}
	return fmt.Sprintf("GET %s: %s%s", e.URL, http.StatusText(e.Status), hint)
}

func newRequest(ctx context.Context, opts Options, method, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "pipe/ml-hub")
	if opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+opts.Token)
	}
	return req, nil
}

func getJSON(ctx context.Context, opts Options, u string, v any) error {
	req, err := newRequest(ctx, opts, http.MethodGet, u)
	if err != nil {
		return err
	}
	resp, err := opts.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &HTTPError{URL: u, Status: resp.StatusCode, Body: string(b)}
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// fileMeta asks the resolve endpoint for a file's ETag and size without
// following redirects, since the hub puts X-Linked-Etag and X-Linked-Size
// of LFS files on its redirect to the storage backend.
func fileMeta(ctx context.Context, opts Options, u string) (etag string, size int64, err error) {
	req, err := newRequest(ctx, opts, http.MethodHead, u)
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Accept-Encoding", "identity")
	client := *opts.Client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, err
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return "", 0, &HTTPError{URL: u, Status: resp.StatusCode}
	}
	etag = resp.Header.Get("X-Linked-Etag")
	if etag == "" {
		etag = resp.Header.Get("ETag")
	}
	etag = strings.Trim(strings.TrimPrefix(etag, "W/"), `"`)
	if etag == "" || strings.ContainsAny(etag, `/\`) || etag == "." || etag == ".." {
		return "", 0, fmt.Errorf("HEAD %s: no usable ETag header", u)
	}
	size = -1
	for _, h := range []string{"X-Linked-Size", "Content-Length"} {
		if s := resp.Header.Get(h); s != "" {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				size = n
				break
			}
		}
	}
	return etag, size, nil
}

var sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)

// downloadFile makes snapshots/<commit>/<file> point at its blob,
// downloading the blob unless it is already there.
func downloadFile(ctx context.Context, opts Options, repo, commit, file, root string) error {
	link := filepath.Join(root, "snapshots", commit, filepath.FromSlash(file))
	if _, err := os.Stat(link); err == nil {
		return nil // Snapshot entries only appear once their blob is complete.
	}
	u := fmt.Sprintf("%s/%s/resolve/%s/%s", opts.Endpoint, repo, commit, escapePath(file))
	etag, size, err := fileMeta(ctx, opts, u)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", repo, file, err)
	}
	blob := filepath.Join(root, "blobs", etag)
	if _, err := os.Stat(blob); err != nil {
		if err := fetchBlob(ctx, opts, repo, file, u, blob, etag, size); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(link), blob)
	if err != nil {
		return err
	}
	if err := os.Symlink(rel, link); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// fetchBlob downloads into <blob>.incomplete, resuming from its current
// size with a Range request, then checks the size and, for LFS files whose
// ETag is a sha256, the checksum, and renames it into place.
func fetchBlob(ctx context.Context, opts Options, repo, file, u, blob, etag string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return err
	}
	tmp := blob + ".incomplete"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if size >= 0 && have > size {
		if err := f.Truncate(0); err != nil {
			return err
		}
		have, _ = f.Seek(0, io.SeekStart)
	}
	if size < 0 || have < size {
		req, err := newRequest(ctx, opts, http.MethodGet, u)
		if err != nil {
			return err
		}
		req.Header.Set("Accept-Encoding", "identity")
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
		resp, err := opts.Client.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %s: %w (partial download kept; run again to resume)", repo, file, err)
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusPartialContent && have > 0:
		case resp.StatusCode == http.StatusOK:
			// The server ignored the range: start over.
			if err := f.Truncate(0); err != nil {
				return err
			}
			if have, err = f.Seek(0, io.SeekStart); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: %s: %w", repo, file, &HTTPError{URL: u, Status: resp.StatusCode})
		}
		pw := &progressWriter{w: f, p: Progress{Repo: repo, File: file, Done: have, Total: size}, cb: opts.Progress}
		pw.report(true)
		_, err = io.Copy(pw, resp.Body)
		pw.report(true)
		if err != nil {
			return fmt.Errorf("%s: %s: download interrupted after %d bytes: %w (partial download kept; run again to resume)", repo, file, pw.p.Done, err)
		}
	}
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%s: %s: downloaded %d bytes, expected %d (partial download kept; run again to resume)", repo, file, n, size)
	}
	if sha256Re.MatchString(etag) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != etag {
			f.Close()
			os.Remove(tmp)
			return fmt.Errorf("%s: %s: checksum mismatch: sha256 %s, the hub says %s (download removed)", repo, file, got, etag)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, blob)
}

type progressWriter struct {
	w    io.Writer
	p    Progress
	cb   func(Progress)
	last time.Time
}

func (pw *progressWriter) Write(b []byte) (int, error) {
	n, err := pw.w.Write(b)
	pw.p.Done += int64(n)
	pw.report(false)
	return n, err
}

func (pw *progressWriter) report(force bool) {
	if pw.cb == nil {
		return
	}
	if now := time.Now(); force || now.Sub(pw.last) > 200*time.Millisecond {
		pw.last = now
		pw.cb(pw.p)
	}
}
