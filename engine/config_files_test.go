package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// fixtureFiles are the files every configuration test sees on disk.
var fixtureFiles = map[string]string{
	"notes.txt":      "notes\n",
	"logs/a.log":     "a\n",
	"logs/sub/b.log": "b\n",
}

func loadFixture(t *testing.T, path string) (*project, hcl.Diagnostics) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"pipeline.hcl": string(src)}
	for k, v := range fixtureFiles {
		files[k] = v
	}
	p := newProject(t, files)
	_, diags := p.tryPlan()
	return p, diags
}

// TestValidConfigs: every file in testdata/valid plans without any
// diagnostic, warnings included.
func TestValidConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.hcl")
	if len(files) == 0 {
		t.Fatal("no valid configurations")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			p, diags := loadFixture(t, f)
			for _, d := range diags {
				t.Errorf("%s", d.Error())
			}
			if diags.HasErrors() {
				return
			}
			if _, err := p.run(t.Context(), Options{}); err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
}

var errorMarker = regexp.MustCompile(`#\s*ERROR:\s*(.+?)\s*$`)

// TestInvalidConfigs: each file in testdata/invalid marks every expected
// error on its line with "# ERROR: <summary>"; the diagnostics must be
// exactly those, each with a source range.
func TestInvalidConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.hcl")
	if len(files) == 0 {
		t.Fatal("no invalid configurations")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, _ := os.ReadFile(f)
			var want []string
			for i, line := range strings.Split(string(src), "\n") {
				if m := errorMarker.FindStringSubmatch(line); m != nil {
					want = append(want, fmt.Sprintf("%d: %s", i+1, m[1]))
				}
			}
			_, diags := loadFixture(t, f)
			var got []string
			for _, d := range diags {
				if d.Severity != hcl.DiagError {
					continue
				}
				if d.Subject == nil {
					got = append(got, fmt.Sprintf("?: %s (no source range: %s)", d.Summary, d.Detail))
					continue
				}
				if d.Detail == "" {
					t.Errorf("line %d: %q has no detail", d.Subject.Start.Line, d.Summary)
				}
				got = append(got, fmt.Sprintf("%d: %s", d.Subject.Start.Line, d.Summary))
			}
			sort.Strings(want)
			sort.Strings(got)
			if g, w := strings.Join(got, "\n"), strings.Join(want, "\n"); g != w {
				t.Errorf("diagnostics (-want +got):\n%s", lineDiff(w, g))
			}
		})
	}
}

// TestCycleNamesEveryStage: the cycle diagnostic names each stage of the
// cycle, in a stable order, whatever the file order.
func TestCycleNamesEveryStage(t *testing.T) {
	_, diags := loadFixture(t, "testdata/invalid/cycle.hcl")
	if len(diags) != 1 {
		t.Fatalf("got %d diagnostics, want 1: %v", len(diags), diags)
	}
	want := "The stages a, b, c depend on each other in a cycle (a → b → c → a)."
	if !strings.HasPrefix(diags[0].Detail, want) {
		t.Errorf("detail = %q, want prefix %q", diags[0].Detail, want)
	}
}

// TestDidYouMean: an unknown kind and an unknown output suggest the
// closest names.
func TestDidYouMean(t *testing.T) {
	_, diags := loadFixture(t, "testdata/invalid/kinds.hcl")
	found := false
	for _, d := range diags {
		if d.Summary == "Unknown stage kind" {
			found = true
			if !strings.Contains(d.Detail, `Did you mean "concat"?`) {
				t.Errorf("detail %q lacks the suggestion", d.Detail)
			}
		}
	}
	if !found {
		t.Error("no unknown-kind diagnostic")
	}
}
