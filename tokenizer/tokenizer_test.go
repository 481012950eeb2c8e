package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pipeml/pipe/artifacts"
)

// loadDefault returns the Qwen2.5 tokenizer. It fails (never skips, so CI
// cannot pass without the files) when `go tool task deps` has not run;
// under -short it skips instead.
func loadDefault(t testing.TB) *Tokenizer {
	t.Helper()
	tk, err := Default()
	if err != nil {
		if testing.Short() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	return tk
}

func TestSpecialTokenIDs(t *testing.T) {
	tk := loadDefault(t)
	// Ids from FORMATS.md section 2.
	want := map[string]int32{
		EndOfText: 151643, IMStart: 151644, IMEnd: 151645,
		ToolCallStart: 151657, ToolCallEnd: 151658,
		FIMPrefix: 151659, FIMMiddle: 151660, FIMSuffix: 151661, FIMPad: 151662,
		RepoName: 151663, FileSep: 151664,
	}
	for name, id := range want {
		got, ok := tk.TokenID(name)
		if !ok || got != id {
			t.Errorf("TokenID(%q) = %d, %v; want %d", name, got, ok, id)
		}
	}
	if got := tk.VocabSize(); got != 151665 {
		t.Errorf("VocabSize() = %d, want 151665", got)
	}
	if eos, id, ok := tk.EOS(); !ok || eos != IMEnd || id != 151645 {
		t.Errorf("EOS() = %q, %d, %v; want %q, 151645", eos, id, ok, IMEnd)
	}
}

func TestEncodeSpecialTokensInText(t *testing.T) {
	tk := loadDefault(t)
	got := tk.Encode("<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>")
	want := []int32{151659, 64, 151661, 65, 151660}
	if !slices.Equal(got, want) {
		t.Errorf("Encode = %v, want %v", got, want)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	tk := loadDefault(t)
	for _, s := range []string{
		"", "hello world", "héllo 世界 🙂 <|im_end|>\n\n\nfoo", "a\x00b(\x00)\x00", "\x00",
		"func main() {\n\tfmt.Println(\"hi\")\n}\n",
	} {
		ids := tk.Encode(s)
		if got := tk.Decode(ids); got != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, got)
		}
		if n := tk.Count(s); n != len(ids) {
			t.Errorf("Count(%q) = %d, want %d", s, n, len(ids))
		}
	}
}

func TestEncodeInvalidUTF8(t *testing.T) {
	tk := loadDefault(t)
	got := tk.Encode("caf\xe9 \xff\xfe ok")
	want := tk.Encode("caf\uFFFD \uFFFD ok")
	if !slices.Equal(got, want) {
		t.Errorf("Encode(invalid UTF-8) = %v, want %v (bad runs as U+FFFD)", got, want)
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("PIPE_TOKENIZER", "")
	t.Setenv("PIPE_CACHE_DIR", "/cache")
	if got, want := DefaultDir(), filepath.Join("/cache", "tokenizers", "qwen2.5"); got != want {
		t.Errorf("DefaultDir() = %q, want %q", got, want)
	}
	t.Setenv("PIPE_TOKENIZER", "/tok")
	if got := DefaultDir(); got != "/tok" {
		t.Errorf("DefaultDir() with PIPE_TOKENIZER = %q, want /tok", got)
	}
}

func TestDefaultMissingSaysWhatToRun(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PIPE_TOKENIZER", dir)
	_, err := Default()
	if err == nil || !strings.Contains(err.Error(), "go tool task deps") || !strings.Contains(err.Error(), dir) {
		t.Errorf("Default() error = %v, want one naming %s and `go tool task deps`", err, dir)
	}
}

// tokenizerCopy returns a folder with the default tokenizer.json and the
// given tokenizer_config.json.
func tokenizerCopy(t *testing.T, config string) string {
	t.Helper()
	src := loadDefault(t).Dir()
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(src, "tokenizer.json"), filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadOtherTemplate(t *testing.T) {
	dir := tokenizerCopy(t, `{"chat_template": "{{ messages[0].content }}", "eos_token": {"content": "<|endoftext|>"}}`)
	tk, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := tk.Encode("hello world"); !slices.Equal(got, []int32{14990, 1879}) {
		t.Errorf("Encode = %v", got)
	}
	if eos, id, ok := tk.EOS(); !ok || eos != EndOfText || id != 151643 {
		t.Errorf("EOS() = %q, %d, %v", eos, id, ok)
	}
	rec := &artifacts.Record{Messages: []artifacts.Message{{Role: "user", Content: "hi"}}}
	_, _, err = tk.EncodeRecord(rec, false)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "tokenizer_config.json")) {
		t.Errorf("EncodeRecord with a foreign template: error = %v, want one naming the config file", err)
	}
	// Without tokenizer_config.json there is no template either.
	tk, err = Load(tokenizerCopy(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tk.EncodeRecord(rec, false); err == nil {
		t.Error("EncodeRecord without a chat template succeeded")
	}
	// Prompt/completion records need no template.
	if _, _, err := tk.EncodeRecord(&artifacts.Record{Prompt: "a", Completion: "b"}, false); err != nil {
		t.Error(err)
	}
}

func TestLoadRejectsUnknownAddedToken(t *testing.T) {
	dir := tokenizerCopy(t, `{"added_tokens_decoder": {"151665": {"content": "<|new|>"}}}`)
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "<|new|>") {
		t.Errorf("Load error = %v, want one naming <|new|>", err)
	}
}

func TestEncodeRecordErrors(t *testing.T) {
	tk := loadDefault(t)
	for name, rec := range map[string]*artifacts.Record{
		"empty":         {},
		"no completion": {Prompt: "p"},
		"both":          {Messages: []artifacts.Message{{Role: "user", Content: "x"}}, Prompt: "p", Completion: "c"},
		"bad role":      {Messages: []artifacts.Message{{Role: "developer", Content: "x"}}},
		"bad arguments": {Messages: []artifacts.Message{{Role: "assistant", ToolCalls: []artifacts.ToolCall{{Type: "function", Function: artifacts.FunctionCall{Name: "f", Arguments: json.RawMessage(`{"a": }`)}}}}}},
		"bad tool":      {Messages: []artifacts.Message{{Role: "user", Content: "x"}}, Tools: []artifacts.Tool{{Type: "function", Function: json.RawMessage(`{"name": "f"} x`)}}},
	} {
		if _, _, err := tk.EncodeRecord(rec, false); err == nil {
			t.Errorf("%s: EncodeRecord succeeded", name)
		}
	}
}

func TestRenderChatUnknownRole(t *testing.T) {
	_, err := RenderChat([]artifacts.Message{{Role: "user", Content: "a"}, {Role: "developer", Content: "b"}}, nil, false)
	if err == nil || !strings.Contains(err.Error(), `"developer"`) {
		t.Errorf("RenderChat error = %v, want one naming the role", err)
	}
}

// TestConcurrentUse encodes the same inputs from many goroutines and
// expects the sequential results (run with -race to check the contract).
func TestConcurrentUse(t *testing.T) {
	tk := loadDefault(t)
	texts := []string{"hello world", "func main() {\n\tprintln(\"hi\")\n}\n", "a\x00b", "你好 🙂 <|im_end|>"}
	rec := &artifacts.Record{Messages: []artifacts.Message{{Role: "user", Content: "q"}, {Role: "assistant", Content: "a"}}}
	want := make([][]int32, len(texts))
	for i, s := range texts {
		want[i] = tk.Encode(s)
	}
	wantRec, wantMask, err := tk.EncodeRecord(rec, false)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				s := texts[(g+i)%len(texts)]
				if got := tk.Encode(s); !slices.Equal(got, want[(g+i)%len(texts)]) {
					errs <- fmt.Sprintf("Encode(%q) = %v", s, got)
					return
				}
				if got := tk.Decode(want[(g+i)%len(texts)]); got != s {
					errs <- fmt.Sprintf("Decode = %q, want %q", got, s)
					return
				}
				ids, mask, err := tk.EncodeRecord(rec, false)
				if err != nil || !slices.Equal(ids, wantRec) || !slices.Equal(mask, wantMask) {
					errs <- fmt.Sprintf("EncodeRecord = %v %v %v", ids, mask, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for i, ids := range tk.EncodeBatch(texts) {
		if !slices.Equal(ids, want[i]) {
			t.Errorf("EncodeBatch[%d] = %v, want %v", i, ids, want[i])
		}
	}
	for e := range errs {
		t.Error(e)
	}
}

// TestEncodeRecordWeightZero checks that an assistant message marked as
// context (weight 0) is rendered exactly as without the mark but is left
// out of the loss mask, while the taught turn stays in it.
func TestEncodeRecordWeightZero(t *testing.T) {
	tok := loadDefault(t)
	zero := 0.0
	msgs := func(w *float64) []artifacts.Message {
		return []artifacts.Message{
			{Role: "user", Content: "first question"},
			{Role: "assistant", Content: "earlier answer", Weight: w},
			{Role: "user", Content: "second question"},
			{Role: "assistant", Content: "taught answer"},
		}
	}
	plainIDs, plainMask, err := tok.EncodeRecord(&artifacts.Record{Messages: msgs(nil)}, false)
	if err != nil {
		t.Fatal(err)
	}
	ids, mask, err := tok.EncodeRecord(&artifacts.Record{Messages: msgs(&zero)}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, plainIDs) {
		t.Fatalf("weight changed the rendered ids")
	}
	masked := func(m []bool) string {
		var sel []int32
		for i, on := range m {
			if on {
				sel = append(sel, ids[i])
			}
		}
		return tok.Decode(sel)
	}
	if got, want := masked(plainMask), "earlier answer<|im_end|>taught answer<|im_end|>"; got != want {
		t.Errorf("mask without weights selects %q, want %q", got, want)
	}
	if got, want := masked(mask), "taught answer<|im_end|>"; got != want {
		t.Errorf("mask with weight 0 selects %q, want %q", got, want)
	}
}
