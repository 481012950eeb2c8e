package codefim

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// benchRoot is the tree BenchmarkExtract reads: $PIPE_FIM_BENCH_ROOT, or
// Go's own source tree.
func benchRoot(b *testing.B) string {
	if r := os.Getenv("PIPE_FIM_BENCH_ROOT"); r != "" {
		return r
	}
	root := filepath.Join(runtime.GOROOT(), "src")
	if _, err := os.Stat(root); err != nil {
		b.Skipf("no Go source tree: %v", err)
	}
	return root
}

// BenchmarkExtract extracts FIM examples (default parameters) from Go's
// source tree with one goroutine, as RunMapper does, and reports MB/s of
// source files read and files/s. Run it with -benchtime=1x: one pass over
// $GOROOT/src takes a minute or more.
func BenchmarkExtract(b *testing.B) {
	root := benchRoot(b)
	testTokenizer(b) // load outside the timer
	s := decode(b, "")
	var files, records int
	var size int64
	for b.Loop() {
		env := newEnv(b, root)
		if err := s.Run(b.Context(), env); err != nil {
			b.Fatal(err)
		}
		files = env.Summary["files_listed"].(int)
		records = env.Summary["records"].(int)
		items, err := s.Items(b.Context(), env)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		size = 0
		for _, it := range items {
			st, err := os.Stat(it.Files[0])
			if err != nil {
				b.Fatal(err)
			}
			size += st.Size()
		}
		b.StartTimer()
	}
	b.SetBytes(size)
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(files)/sec, "files/s")
	b.ReportMetric(float64(records)/sec, "records/s")
	b.ReportMetric(float64(files), "files")
}

// BenchmarkTokenizeOnly is BenchmarkExtract's peer: it reads the same
// files and counts the tokens of each whole file once, the least
// tokenizer work any token-sized extraction needs.
func BenchmarkTokenizeOnly(b *testing.B) {
	root := benchRoot(b)
	tok := testTokenizer(b)
	s := decode(b, "")
	items, err := s.Items(b.Context(), newEnv(b, root))
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for b.Loop() {
		size = 0
		for _, it := range items {
			data, err := os.ReadFile(it.Files[0])
			if err != nil {
				b.Fatal(err)
			}
			size += int64(len(data))
			tok.Count(string(data))
		}
	}
	b.SetBytes(size)
	b.ReportMetric(float64(len(items))/(b.Elapsed().Seconds()/float64(b.N)), "files/s")
}

// BenchmarkOneChangedFile measures a re-run over a 10,000-file repository
// after one file changed, with a per-item cache as the engine keeps one:
// list, hash every file, map the changed one, reduce. "full" is the same
// run with an empty cache, the peer to compare with.
func BenchmarkOneChangedFile(b *testing.B) {
	const n = 10000
	repo := filepath.Join(b.TempDir(), "big")
	writeManyFiles(b, repo, n)
	testTokenizer(b)
	s := decode(b, "")
	rel := manyFilePath(n / 2)
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			runEngineLike(b, newEnv(b, repo), s, 1, 0, &itemCache{results: map[string][]byte{}})
		}
	})
	b.Run("one_changed", func(b *testing.B) {
		cache := &itemCache{results: map[string][]byte{}}
		runEngineLike(b, newEnv(b, repo), s, 1, 0, cache)
		i := 0
		for b.Loop() {
			b.StopTimer()
			i++
			writeTree(b, repo, map[string]string{rel: "package x\n\n// V returns a version.\nfunc V() int {\n\treturn " + itoa(i) + "\n}\n"})
			cache.mapped = 0
			env := newEnv(b, repo)
			b.StartTimer()
			runEngineLike(b, env, s, 1, 0, cache)
			if cache.mapped != 1 {
				b.Fatalf("mapped %d items, want 1", cache.mapped)
			}
		}
	})
}
