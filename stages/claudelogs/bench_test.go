package claudelogs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// benchFolder builds a synthetic Claude Code projects folder of about mb
// megabytes from the real transcripts in testdata/real: copies of each
// session (with its subagents/ folder) under their own project folders,
// with session ids and uuids rewritten per copy so that no two sessions
// are the same.
func benchFolder(b *testing.B, mb int) (dir string, total int64) {
	b.Helper()
	dir = b.TempDir()
	type src struct {
		rel  string
		data []byte
	}
	var srcs []src
	var size int64
	root := "testdata/real/marot_spotter"
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		srcs = append(srcs, src{rel, data})
		size += int64(len(data))
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// Ids that appear in the real files, rewritten per copy.
	ids := []string{"4d5611e5-241a-462a-8d15-5122611a9569", "55604662-cf2a-4331-851a-ec234028f8ca", "d6e0bada-1959-4eec-a9d2-0bfade768d8f"}
	copies := int((int64(mb)<<20)/size) + 1
	for i := range copies {
		proj := filepath.Join(dir, fmt.Sprintf("-home-dev-src-project%03d", i%50))
		r := make([]string, 0, 2*len(ids))
		for _, id := range ids {
			r = append(r, id, fmt.Sprintf("%08x%s", i, id[8:]))
		}
		rep := strings.NewReplacer(r...)
		for _, s := range srcs {
			p := filepath.Join(proj, rep.Replace(s.rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			// The uuid prefix rewrite keeps lines and chains intact.
			data := bytes.ReplaceAll([]byte(rep.Replace(string(s.data))), []byte(`"uuid":"`), []byte(fmt.Sprintf(`"uuid":"%04x`, i%65536)))
			data = bytes.ReplaceAll(data, []byte(`"parentUuid":"`), []byte(fmt.Sprintf(`"parentUuid":"%04x`, i%65536)))
			if err := os.WriteFile(p, data, 0o644); err != nil {
				b.Fatal(err)
			}
			total += int64(len(data))
		}
	}
	return dir, total
}

// benchMB is the size of the synthetic log folder: $PIPE_BENCH_LOG_MB, or
// 1024 (32 with -short).
func benchMB() int {
	if v, err := strconv.Atoi(os.Getenv("PIPE_BENCH_LOG_MB")); err == nil && v > 0 {
		return v
	}
	if testing.Short() {
		return 32
	}
	return 1024
}

// BenchmarkClaudeLogs converts a synthetic log folder (about 1 GB by
// default) and reports MB/s of input, with parallelism 1 and 2, against
// two peers in the same run: reading the files, and decoding every line
// into a map[string]any (what a naive converter does before any work).
func BenchmarkClaudeLogs(b *testing.B) {
	dir, total := benchFolder(b, benchMB())
	b.Logf("log folder: %d MB", total>>20)
	st := New(DefaultConfig())
	for _, par := range []int{1, 2} {
		b.Run(fmt.Sprintf("stage/p%d", par), func(b *testing.B) {
			b.SetBytes(total)
			for b.Loop() {
				env := newEnv(b, par, dir)
				if err := st.Run(b.Context(), env); err != nil {
					b.Fatal(err)
				}
				rec, _ := readOutputs(b, env)
				b.ReportMetric(float64(len(rec))/float64(1<<20), "MB-out")
			}
		})
	}
	files, err := listFiles(b.Context(), []string{dir})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("peer/read", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			for _, f := range files {
				if _, err := os.ReadFile(f); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("peer/decode-map", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					b.Fatal(err)
				}
				for _, ln := range bytes.Split(data, []byte("\n")) {
					if len(ln) == 0 {
						continue
					}
					var v map[string]any
					if err := json.Unmarshal(ln, &v); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	})
}
