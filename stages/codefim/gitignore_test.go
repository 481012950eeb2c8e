package codefim

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIgnoreRules(t *testing.T) {
	tests := []struct {
		pattern string
		path    string
		isDir   bool
		match   bool // the rule matches path
	}{
		{"*.o", "a.o", false, true},
		{"*.o", "dir/sub/a.o", false, true},
		{"*.o", "a.oo", false, false},
		{"build/", "build", true, true},
		{"build/", "build", false, false},
		{"build/", "src/build", true, true},
		{"/build", "build", false, true},
		{"/build", "src/build", false, false},
		{"doc/frotz", "doc/frotz", false, true},
		{"doc/frotz", "a/doc/frotz", false, false},
		{"doc/frotz/", "doc/frotz", true, true},
		{"**/foo", "foo", false, true},
		{"**/foo", "a/b/foo", true, true},
		{"**/foo/bar", "x/foo/bar", false, true},
		{"**/foo/bar", "foo/bar", false, true},
		{"abc/**", "abc/x", false, true},
		{"abc/**", "abc/x/y", false, true},
		{"abc/**", "abc", true, false},
		{"a/**/b", "a/b", false, true},
		{"a/**/b", "a/x/b", false, true},
		{"a/**/b", "a/x/y/b", false, true},
		{"a/**/b", "a/x/y/c", false, false},
		{"foo/*", "foo/bar", false, true},
		{"foo/*", "foo/bar/baz", false, false},
		{"a?c", "abc", false, true},
		{"a?c", "a/c", false, false},
		{"[abc].go", "b.go", false, true},
		{"[!abc].go", "b.go", false, false},
		{"[!abc].go", "d.go", false, true},
		{"[a-c]x", "bx", false, true},
		{"[a-c]x", "dx", false, false},
		{"[]]x", "]x", false, true},
		{`\#file`, "#file", false, true},
		{`\!important`, "!important", false, true},
		{"trailing   ", "trailing", false, true},
		{`space\ `, "space ", false, true},
		{"a**b", "axyb", false, true},
		{"a**b", "ax/yb", false, false},
		{"*.[ch]", "x/main.c", false, true},
		{"[[:digit:]]*.txt", "1a.txt", false, true},
		{"[[:digit:]]*.txt", "a1.txt", false, false},
		{"weird[", "weird[", false, true},
	}
	for _, tt := range tests {
		r, ok := compileIgnoreLine(tt.pattern)
		if !ok {
			t.Errorf("compileIgnoreLine(%q) rejected the pattern", tt.pattern)
			continue
		}
		if got, _ := r.match(tt.path, tt.isDir); got != tt.match {
			t.Errorf("pattern %q on %q (dir %v): match = %v, want %v (regexp %s)", tt.pattern, tt.path, tt.isDir, got, tt.match, r.re)
		}
	}
	for _, skipped := range []string{"", "# comment", "   ", "!", "/", `trailing\`} {
		if _, ok := compileIgnoreLine(skipped); ok {
			t.Errorf("compileIgnoreLine(%q) gave a rule, want none", skipped)
		}
	}
}

func TestIgnoreStackPrecedence(t *testing.T) {
	root := parseIgnore("", []byte("*.log\n!keep.log\nsecret/\n"))
	sub := parseIgnore("sub", []byte("!*.log\n/local.go\n"))
	s := ignoreStack{root, sub}
	tests := []struct {
		path  string
		isDir bool
		want  bool
	}{
		{"a.log", false, true},
		{"keep.log", false, false},
		{"x/keep.log", false, false},
		{"sub/a.log", false, false}, // re-included by the deeper file
		{"secret", true, true},
		{"sub/secret", true, true},
		{"local.go", false, false},
		{"sub/local.go", false, true},
		{"sub/deeper/local.go", false, false},
	}
	for _, tt := range tests {
		if got := s.ignored(tt.path, tt.isDir); got != tt.want {
			t.Errorf("ignored(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

// writeTree creates files under root; a value of nil bytes makes an empty
// file.
func writeTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// gitignoreTree exercises nested ignore files, negations, folder-only
// patterns, anchoring, "**" and the rule that a file in an excluded
// folder cannot be re-included.
var gitignoreTree = map[string]string{
	".gitignore": "# build outputs\n*.gen.go\n/out/\nlogs/\n!keep.gen.go\ntmp*\n" +
		"docs/**/draft.go\nexcluded/\n!excluded/back.go\n**/cache/*.go\nwild[0-9].go\n",
	"main.go":                    "package main\n",
	"a.gen.go":                   "package main\n",
	"keep.gen.go":                "package main\n",
	"out/x.go":                   "package out\n",
	"src/out/x.go":               "package out\n", // "/out/" is anchored to the root
	"logs/a.go":                  "package logs\n",
	"src/logs/a.go":              "package logs\n",
	"tmpfile.go":                 "package main\n",
	"src/tmp/x.go":               "package tmp\n",
	"docs/draft.go":              "package docs\n",
	"docs/a/b/draft.go":          "package docs\n",
	"docs/a/final.go":            "package docs\n",
	"excluded/back.go":           "package excluded\n",
	"cache/a.go":                 "package cache\n",
	"deep/cache/b.go":            "package cache\n",
	"deep/cache/sub/c.go":        "package cache\n",
	"wild1.go":                   "package main\n",
	"wildx.go":                   "package main\n",
	"pkg/.gitignore":             "!*.gen.go\n/only_here.go\nsub/\n",
	"pkg/z.gen.go":               "package pkg\n",
	"pkg/only_here.go":           "package pkg\n",
	"pkg/inner/only_here.go":     "package pkg\n",
	"pkg/sub/x.go":               "package sub\n",
	"pkg/inner/.gitignore":       "*\n!*.go\n!*/\nskip.go\n",
	"pkg/inner/keep.go":          "package inner\n",
	"pkg/inner/skip.go":          "package inner\n",
	"pkg/inner/d/k.go":           "package d\n",
	"other/.gitignore":           "\\#hash.go\nspace\\ .go\n",
	"other/#hash.go":             "package other\n",
	"other/space .go":            "package other\n",
	"other/plain.go":             "package other\n",
	"notignored/logs.go":         "package notignored\n",
	"notignored/logs/inside.go":  "package notignored\n",
	"negated_dir/.gitignore":     "*.go\n!important.go\n",
	"negated_dir/important.go":   "package n\n",
	"negated_dir/unimportant.go": "package n\n",
}

// walkAll walks root keeping every Go file and skipping nothing else.
func walkAll(t testing.TB, root string) []string {
	t.Helper()
	st := &walkStats{SkippedDirs: map[string]int{}, SkippedFiles: map[string]int{}}
	opt := walkOptions{languages: map[string]bool{"go": true}, maxFileBytes: 1 << 30}
	files, err := walkRepo(context.Background(), root, opt, st)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Rel)
	}
	return got
}

// TestWalkMatchesGit compares the walk with what git itself leaves
// untracked and not ignored in the same tree.
func TestWalkMatchesGit(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed")
	}
	root := t.TempDir()
	writeTree(t, root, gitignoreTree)
	cmd := exec.Command(git, "init", "-q", root)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "HOME="+root)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	// An exclude in .git/info/exclude counts too.
	writeTree(t, root, map[string]string{".git/info/exclude": "wildx.go\n"})
	cmd = exec.Command(git, "-C", root, "ls-files", "--others", "--exclude-standard", "-z")
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "HOME="+root)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var want []string
	for _, p := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if strings.HasSuffix(p, ".go") {
			want = append(want, p)
		}
	}
	sort.Strings(want)
	got := walkAll(t, root)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("walk differs from git ls-files (-git +walk):\n%s", diff)
	}
	// The tree is built so that every kind of rule decides something.
	if len(want) < 10 || len(want) > len(gitignoreTree)-10 {
		t.Errorf("git keeps %d of %d files; the fixture no longer exercises the rules", len(want), len(gitignoreTree))
	}
}

// TestWalkGitignoreFixed pins the expected result without git, so the
// test means something where git is missing.
func TestWalkGitignoreFixed(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, gitignoreTree)
	want := []string{
		"deep/cache/sub/c.go",
		"docs/a/final.go",
		"keep.gen.go",
		"main.go",
		"negated_dir/important.go",
		"notignored/logs.go",
		"other/plain.go",
		"pkg/inner/d/k.go",
		"pkg/inner/keep.go",
		"pkg/inner/only_here.go",
		"pkg/z.gen.go",
		"src/out/x.go",
		"wildx.go",
	}
	if diff := cmp.Diff(want, walkAll(t, root)); diff != "" {
		t.Errorf("walk (-want +got):\n%s", diff)
	}
}
