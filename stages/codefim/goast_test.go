package codefim

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGoCandidatesExact(t *testing.T) {
	src := `package p

func f(x int) int {
	if x > 0 { return x }
	switch x {
	case -1:
		x = 1
	}
	return -x
}
`
	type cand struct{ Kind, Text string }
	var got []cand
	for _, c := range goCandidates(src) {
		got = append(got, cand{c.kind, src[c.start:c.end]})
	}
	want := []cand{
		{boundaryFunc, "func f(x int) int {\n\tif x > 0 { return x }\n\tswitch x {\n\tcase -1:\n\t\tx = 1\n\t}\n\treturn -x\n}\n"},
		{boundaryFuncBody, "\tif x > 0 { return x }\n\tswitch x {\n\tcase -1:\n\t\tx = 1\n\t}\n\treturn -x\n"},
		{boundaryStmt, "\tif x > 0 { return x }\n"},
		{boundaryStmts, "\tif x > 0 { return x }\n\tswitch x {\n\tcase -1:\n\t\tx = 1\n\t}\n"},
		// The run of all three statements is the function body, kept once.
		{boundaryStmt, "\tswitch x {\n\tcase -1:\n\t\tx = 1\n\t}\n"},
		{boundaryStmts, "\tswitch x {\n\tcase -1:\n\t\tx = 1\n\t}\n\treturn -x\n"},
		{boundaryStmt, "\treturn -x\n"},
		// The one-line if body: not whole lines, so taken exactly.
		{boundaryBlock, "return x"},
		{boundaryStmt, "\t\tx = 1\n"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("candidates (-want +got):\n%s", diff)
	}
	if goCandidates("package p\nfunc (") != nil {
		t.Errorf("candidates from a file that does not parse")
	}
}

// TestGoCandidatesParse checks every syntax candidate of a sample of the
// standard library: each parses as what its kind says it is.
func TestGoCandidatesParse(t *testing.T) {
	root := filepath.Join(runtime.GOROOT(), "src")
	dirs := []string{"go/ast", "go/printer", "strconv", "net/http/httputil", "text/template", "sync", "bufio"}
	if testing.Short() {
		dirs = dirs[:3]
	}
	files, cands := 0, map[string]int{}
	for _, d := range dirs {
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(d), "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				t.Fatal(err)
			}
			src := string(b)
			files++
			for _, c := range goCandidates(src) {
				cands[c.kind]++
				mid := src[c.start:c.end]
				if err := parseMiddle(c.kind, mid); err != nil {
					t.Errorf("%s [%d:%d] %s does not parse: %v\n%s", m, c.start, c.end, c.kind, err, mid)
				}
				if strings.TrimSpace(mid) == "" {
					t.Errorf("%s [%d:%d]: blank %s candidate", m, c.start, c.end, c.kind)
				}
			}
		}
	}
	if files < 20 {
		t.Fatalf("only %d files under %s", files, root)
	}
	for _, k := range []string{boundaryStmt, boundaryStmts, boundaryBlock, boundaryFuncBody, boundaryFunc} {
		if cands[k] == 0 {
			t.Errorf("no %s candidate in %d files", k, files)
		}
	}
}
