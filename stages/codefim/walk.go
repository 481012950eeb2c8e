package codefim

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// sourceFile is one file the walk keeps.
type sourceFile struct {
	Rel      string // slash-separated path relative to the repository root
	Abs      string // path on disk
	Language string
	Size     int64
}

// walkOptions are the walk's filters.
type walkOptions struct {
	skipDirs     map[string]bool
	languages    map[string]bool
	maxFileBytes int64
}

// walkStats counts what the walk left out, by reason.
type walkStats struct {
	SkippedDirs  map[string]int `json:"skipped_dirs"`
	SkippedFiles map[string]int `json:"skipped_files"`
}

// Reasons the walk leaves a path out, as they appear in the report.
const (
	skipGitignore = "gitignore"
	skipVCS       = "vcs"
	skipVendored  = "vendored"
	skipLock      = "lock_file"
	skipLanguage  = "language"
	skipTooLarge  = "too_large"
	skipIrregular = "not_regular"
)

// walkRepo lists the files of the repository at root that pass the
// filters, in lexical order of their relative paths. It honours the
// .gitignore files of every folder (and .git/info/exclude), skips VCS
// folders, vendored folders, lock files, files of other languages and
// files larger than the limit, and does not follow symbolic links.
func walkRepo(ctx context.Context, root string, opt walkOptions, st *walkStats) ([]sourceFile, error) {
	var stack ignoreStack
	if b, err := os.ReadFile(filepath.Join(root, ".git", "info", "exclude")); err == nil {
		stack = append(stack, parseIgnore("", b))
	}
	var out []sourceFile
	err := walkDir(ctx, root, "", stack, opt, st, &out)
	return out, err
}

func walkDir(ctx context.Context, root, rel string, stack ignoreStack, opt walkOptions, st *walkStats, out *[]sourceFile) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Join(root, filepath.FromSlash(rel))
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(dir, ".gitignore")); err == nil {
		// A new slice, so sibling folders do not see this file's rules.
		stack = append(stack[:len(stack):len(stack)], parseIgnore(rel, b))
	}
	for _, e := range entries {
		name := e.Name()
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		isDir := e.IsDir()
		if isDir {
			switch {
			case vcsDirs[name]:
				st.SkippedDirs[skipVCS]++
			case stack.ignored(p, true):
				st.SkippedDirs[skipGitignore]++
			case opt.skipDirs[name]:
				st.SkippedDirs[skipVendored]++
			default:
				if err := walkDir(ctx, root, p, stack, opt, st, out); err != nil {
					return err
				}
			}
			continue
		}
		if stack.ignored(p, false) {
			st.SkippedFiles[skipGitignore]++
			continue
		}
		if !e.Type().IsRegular() {
			st.SkippedFiles[skipIrregular]++
			continue
		}
		if isLockFile(name) {
			st.SkippedFiles[skipLock]++
			continue
		}
		lang := languageOf(name)
		if lang == "" || !opt.languages[lang] {
			st.SkippedFiles[skipLanguage]++
			continue
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while we walked
			}
			return err
		}
		if info.Size() > opt.maxFileBytes {
			st.SkippedFiles[skipTooLarge]++
			continue
		}
		*out = append(*out, sourceFile{
			Rel:      p,
			Abs:      filepath.Join(dir, name),
			Language: lang,
			Size:     info.Size(),
		})
	}
	return nil
}

// repoName is the name a repository goes by in keys, meta and the
// <|repo_name|> context: the base name of its folder.
func repoName(root string) string {
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	return path.Base(filepath.ToSlash(filepath.Clean(abs)))
}

// splitKey splits an item key "<repo>/<path>" into its parts.
func splitKey(key string) (repo, rel string) {
	repo, rel, _ = strings.Cut(key, "/")
	return repo, rel
}
