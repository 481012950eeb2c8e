package claudelogs

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden runs the stage on the real transcripts and the synthetic
// sessions and compares records and report byte for byte with
// testdata/golden.
func TestGolden(t *testing.T) {
	tests := []struct {
		name, hcl string
		logs      []string
	}{
		{"real_turn", ``, []string{"testdata/real"}},
		{"real_pair", `mode = "pair"`, []string{"testdata/real"}},
		{"real_follow", `mode = "follow"` + "\n" + `follow_minutes = 2`, []string{"testdata/real"}},
		{"layouts_turn", ``, []string{"testdata/v1", "testdata/v2", "testdata/v21"}},
		{"layouts_pair_nosub", `mode = "pair"` + "\n" + `subagents = false` + "\n" + `system_prompt = ""`, []string{"testdata/v1", "testdata/v2", "testdata/v21"}},
		{"bad", ``, []string{"testdata/bad"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			records, report := run(t, decode(t, tt.hcl), 2, tt.logs...)
			for _, out := range []struct {
				file string
				got  []byte
			}{
				{tt.name + ".records.jsonl", records},
				{tt.name + ".report.json", report},
			} {
				path := filepath.Join("testdata", "golden", out.file)
				if *update {
					if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, out.got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if !bytes.Equal(out.got, want) {
					t.Errorf("%s differs from the golden file (%d bytes, want %d); run with -update and review the diff", path, len(out.got), len(want))
				}
			}
		})
	}
}
