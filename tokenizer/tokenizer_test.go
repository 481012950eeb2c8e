package tokenizer

import (
	"slices"
	"testing"
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
