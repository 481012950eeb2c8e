package engine

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDependencyRules keeps the package table of STYLE.md true for the
// engine's side of the tree: what engine, engine/config and cache may
// import (non-test files only).
func TestDependencyRules(t *testing.T) {
	const mod = "github.com/pipeml/pipe/"
	rules := map[string][]string{
		".":                 {mod + "stages/", mod + "ml", mod + "cmd", "github.com/charmbracelet/"},
		"config":            {mod + "engine", mod + "stages", mod + "cache", mod + "ml"},
		"../cache":          {"github.com/hashicorp/hcl", mod + "engine", mod + "stages", mod + "ml"},
		"../stages/command": {mod + "engine", mod + "ml"},
	}
	for dir, banned := range rules {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			name := e.Name()
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, name), nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				for _, b := range banned {
					// "x/" bans x's subpackages; "x" bans x and them.
					hit := strings.HasPrefix(path, b)
					if !strings.HasSuffix(b, "/") {
						hit = path == b || strings.HasPrefix(path, b+"/")
					}
					if hit {
						t.Errorf("%s imports %s, which STYLE.md forbids there", filepath.Join(dir, name), path)
					}
				}
			}
		}
	}
}
