package tokenizer

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/pipeml/pipe/artifacts"
)

var corpusOut = flag.String("corpus-out", "", "TestBenchCorpus writes the benchmark corpus to this JSON file (for scripts/tokenizer-bench.sh)")

// benchCorpusBytes is the size the benchmark corpus grows to.
const benchCorpusBytes = 2 << 20

// benchCorpus returns the benchmark text: real mixed code and prose, one
// document a file, from the Go installation running the test. In order:
// every .go file of net/http and encoding/json (code with doc comments),
// then the language spec, memory model and GODEBUG notes (prose with code),
// until the total reaches 2 MiB.
func benchCorpus(tb testing.TB) []string {
	tb.Helper()
	root := runtime.GOROOT()
	var paths []string
	for _, pat := range []string{"src/net/http/*.go", "src/encoding/json/*.go", "doc/go_spec.html", "doc/go_mem.html", "doc/godebug.md"} {
		m, err := filepath.Glob(filepath.Join(root, pat))
		if err != nil {
			tb.Fatal(err)
		}
		slices.Sort(m)
		paths = append(paths, m...)
	}
	var docs []string
	total := 0
	for _, p := range paths {
		if total >= benchCorpusBytes {
			break
		}
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		docs = append(docs, string(data))
		total += len(data)
	}
	if total < benchCorpusBytes {
		tb.Fatalf("only %d bytes of Go sources under %s", total, root)
	}
	return docs
}

// TestBenchCorpus checks that the benchmark corpus can be built and, with
// -corpus-out, writes it for the Python side of the benchmark.
func TestBenchCorpus(t *testing.T) {
	docs := benchCorpus(t)
	if *corpusOut == "" {
		return
	}
	data, err := json.Marshal(docs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*corpusOut, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func corpusSize(docs []string) (bytes int) {
	for _, d := range docs {
		bytes += len(d)
	}
	return bytes
}

// BenchmarkEncode encodes the corpus one document after another on one
// goroutine, as tokenizers' Tokenizer.encode does in a Python loop.
func BenchmarkEncode(b *testing.B) {
	tk := loadDefault(b)
	docs := benchCorpus(b)
	b.SetBytes(int64(corpusSize(docs)))
	tokens := 0
	n := 0
	for b.Loop() {
		n++
		tokens = 0
		for _, d := range docs {
			tokens += len(tk.Encode(d))
		}
	}
	b.ReportMetric(float64(tokens)*float64(n)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(tokens), "tokens")
}

// BenchmarkEncodeParallel encodes the corpus with EncodeBatch (one
// goroutine per CPU), the counterpart of tokenizers' encode_batch.
func BenchmarkEncodeParallel(b *testing.B) {
	tk := loadDefault(b)
	docs := benchCorpus(b)
	b.SetBytes(int64(corpusSize(docs)))
	tokens, n := 0, 0
	for b.Loop() {
		n++
		tokens = 0
		for _, ids := range tk.EncodeBatch(docs) {
			tokens += len(ids)
		}
	}
	b.ReportMetric(float64(tokens)*float64(n)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkEncodeRecord renders and encodes chat records with masks, one
// record a corpus document (the user asks, the assistant answers with the
// document and a tool call).
func BenchmarkEncodeRecord(b *testing.B) {
	tk := loadDefault(b)
	docs := benchCorpus(b)
	recs := make([]*artifacts.Record, len(docs))
	for i, d := range docs {
		recs[i] = &artifacts.Record{Messages: []artifacts.Message{
			{Role: "user", Content: "Show me the file."},
			{Role: "assistant", Content: d, ToolCalls: []artifacts.ToolCall{{Type: "function", Function: artifacts.FunctionCall{Name: "Read", Arguments: json.RawMessage(`{"file_path": "/x.go"}`)}}}},
			{Role: "tool", Content: "ok"},
			{Role: "assistant", Content: "Done."},
		}}
	}
	b.SetBytes(int64(corpusSize(docs)))
	tokens := 0
	n := 0
	for b.Loop() {
		n++
		tokens = 0
		for _, r := range recs {
			ids, _, err := tk.EncodeRecord(r, false)
			if err != nil {
				b.Fatal(err)
			}
			tokens += len(ids)
		}
	}
	b.ReportMetric(float64(tokens)*float64(n)/b.Elapsed().Seconds(), "tokens/s")
}
