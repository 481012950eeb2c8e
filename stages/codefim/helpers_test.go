package codefim

import (
	"bytes"
	"context"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/stages/stagestest"
	"github.com/pipeml/pipe/tokenizer"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// decode builds a stage from an HCL snippet of parameters, through the
// kind's own Spec, as the engine does.
func decode(t testing.TB, src string) *Stage {
	t.Helper()
	return stagestest.Decode(t, Definition, src).(*Stage)
}

// newEnv returns an env for one run over repos in a fresh folder.
func newEnv(t testing.TB, repos ...string) *stages.Env {
	t.Helper()
	out := t.TempDir()
	return &stages.Env{
		Stage:       "test",
		Kind:        Definition.Name,
		Inputs:      map[string]stages.Input{"repos": {Name: "repos", Paths: repos}},
		OutDir:      out,
		TempDir:     t.TempDir(),
		Parallelism: 1,
		Summary:     map[string]any{},
	}
}

// testTokenizer returns the default Qwen2.5 tokenizer or fails the test.
func testTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Default()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// itemCache stands in for the engine's per-item cache: results by item
// key and the digests of the item's files.
type itemCache struct {
	mu      sync.Mutex
	results map[string][]byte
	mapped  int // Map calls made
}

func itemCacheKey(t testing.TB, it stages.Item) string {
	t.Helper()
	k := it.Key
	for _, f := range it.Files {
		d, _, err := artifacts.DigestFile(f)
		if err != nil {
			t.Fatal(err)
		}
		k += "\x00" + string(d)
	}
	return k
}

// runEngineLike drives m as the engine does: it lists the items, visits
// them in an order shuffled by shuffleSeed (0 keeps the listing order)
// with `workers` goroutines, maps those not in cache (which may be nil),
// and reduces the results handed over in the visiting order.
func runEngineLike(t testing.TB, env *stages.Env, m stages.Mapper, workers int, shuffleSeed uint64, cache *itemCache) {
	t.Helper()
	ctx := context.Background()
	items, err := m.Items(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if shuffleSeed != 0 {
		r := rand.New(rand.NewPCG(shuffleSeed, 1))
		r.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	}
	outs := make([][]byte, len(items))
	errs := make([]error, len(items))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var key string
				if cache != nil {
					key = itemCacheKey(t, items[i])
					cache.mu.Lock()
					b, ok := cache.results[key]
					cache.mu.Unlock()
					if ok {
						outs[i] = b
						continue
					}
				}
				var buf bytes.Buffer
				errs[i] = m.Map(ctx, env, items[i], &buf)
				outs[i] = buf.Bytes()
				if cache != nil {
					cache.mu.Lock()
					cache.results[key] = outs[i]
					cache.mapped++
					cache.mu.Unlock()
				}
			}
		}()
	}
	for i := range items {
		next <- i
	}
	close(next)
	wg.Wait()
	results := make([]stages.ItemResult, len(items))
	for i := range items {
		if errs[i] != nil {
			t.Fatalf("Map(%s): %v", items[i].Key, errs[i])
		}
		data := outs[i]
		results[i] = stages.ItemResult{Item: items[i], Open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}}
	}
	if err := m.Reduce(ctx, env, results); err != nil {
		t.Fatal(err)
	}
}

// readOutputs returns the records and report bytes of a run.
func readOutputs(t testing.TB, env *stages.Env) (records, report []byte) {
	t.Helper()
	records, err := os.ReadFile(env.OutputPath("records"))
	if err != nil {
		t.Fatal(err)
	}
	report, err = os.ReadFile(env.OutputPath("report"))
	if err != nil {
		t.Fatal(err)
	}
	return records, report
}

// parseRecords decodes JSONL records.
func parseRecords(t testing.TB, data []byte) []*artifacts.Record {
	t.Helper()
	rr := artifacts.NewRecordReader(bytes.NewReader(data), "records")
	var out []*artifacts.Record
	for {
		r, err := rr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}

// metaInt reads an integer meta field (a float64 after JSON decoding).
func metaInt(t testing.TB, r *artifacts.Record, key string) int {
	t.Helper()
	f, ok := r.Meta[key].(float64)
	if !ok {
		t.Fatalf("meta %q is %T, want a number", key, r.Meta[key])
	}
	return int(f)
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; diff with:\n  go test ./stages/codefim -run %s -update && git diff %s", path, t.Name(), path)
	}
}
