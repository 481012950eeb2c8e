package tokenizer

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pipeml/pipe/artifacts"
)

// hfCases are the inputs of testdata/make_fixtures.py.
type hfCases struct {
	Chats []struct {
		Name                string              `json:"name"`
		Messages            []artifacts.Message `json:"messages"`
		Tools               []artifacts.Tool    `json:"tools"`
		AddGenerationPrompt bool                `json:"add_generation_prompt"`
	} `json:"chats"`
	Texts []struct {
		Name string `json:"name"`
		Text string `json:"text"`
	} `json:"texts"`
	FIM []struct {
		Name       string `json:"name"`
		Prompt     string `json:"prompt"`
		Completion string `json:"completion"`
	} `json:"fim"`
	JSONValues []string `json:"json_values"`
}

// hfFixtures are the outputs of testdata/make_fixtures.py: what
// transformers produced for hfCases.
type hfFixtures struct {
	Meta  map[string]any `json:"meta"`
	Chats []struct {
		Name     string  `json:"name"`
		Rendered string  `json:"rendered"`
		IDs      []int32 `json:"ids"`
		Mask     []int   `json:"mask"`
	} `json:"chats"`
	Texts []struct {
		Name    string  `json:"name"`
		IDs     []int32 `json:"ids"`
		Decoded string  `json:"decoded"`
	} `json:"texts"`
	FIM []struct {
		Name          string  `json:"name"`
		PromptIDs     []int32 `json:"prompt_ids"`
		CompletionIDs []int32 `json:"completion_ids"`
		ConcatIDs     []int32 `json:"concat_ids"`
	} `json:"fim"`
	JSONValues []string `json:"json_values"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func loadHF(t *testing.T) (*hfCases, *hfFixtures) {
	t.Helper()
	var in hfCases
	var out hfFixtures
	readJSON(t, "testdata/chat_cases.json", &in)
	readJSON(t, "testdata/hf_fixtures.json", &out)
	if len(in.Chats) != len(out.Chats) || len(in.Texts) != len(out.Texts) || len(in.FIM) != len(out.FIM) || len(in.JSONValues) != len(out.JSONValues) {
		t.Fatal("testdata/hf_fixtures.json does not match testdata/chat_cases.json: rerun make_fixtures.py")
	}
	return &in, &out
}

// TestRenderChatMatchesHF needs no tokenizer files: rendering is pure Go.
func TestRenderChatMatchesHF(t *testing.T) {
	in, out := loadHF(t)
	for i, c := range in.Chats {
		want := out.Chats[i]
		t.Run(c.Name, func(t *testing.T) {
			if want.Name != c.Name {
				t.Fatalf("fixture %d is %q, case is %q", i, want.Name, c.Name)
			}
			got, err := RenderChat(c.Messages, c.Tools, c.AddGenerationPrompt)
			if err != nil {
				t.Fatal(err)
			}
			if got != want.Rendered {
				t.Errorf("RenderChat differs from apply_chat_template:\n got %q\nwant %q", got, want.Rendered)
			}
		})
	}
}

func TestEncodeChatMatchesHF(t *testing.T) {
	tk := loadDefault(t)
	in, out := loadHF(t)
	for i, c := range in.Chats {
		want := out.Chats[i]
		t.Run(c.Name, func(t *testing.T) {
			if got := tk.Encode(want.Rendered); !slices.Equal(got, want.IDs) {
				t.Errorf("Encode(rendered) differs from apply_chat_template ids:\n got %v\nwant %v", got, want.IDs)
			}
			ids, mask, err := tk.encodeChat(c.Messages, c.Tools, c.AddGenerationPrompt, false)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids, want.IDs) {
				t.Errorf("ids differ from apply_chat_template:\n got %v\nwant %v", ids, want.IDs)
			}
			wantMask := make([]bool, len(want.Mask))
			for j, m := range want.Mask {
				wantMask[j] = m == 1
			}
			if !slices.Equal(mask, wantMask) {
				t.Errorf("mask differs from return_assistant_tokens_mask:\n got %v\nwant %v\n%s", mask, wantMask, maskedText(tk, ids, mask))
			}
			if !c.AddGenerationPrompt {
				rec := &artifacts.Record{Messages: c.Messages, Tools: c.Tools}
				ids2, mask2, err := tk.EncodeRecord(rec, false)
				if err != nil || !slices.Equal(ids2, ids) || !slices.Equal(mask2, mask) {
					t.Errorf("EncodeRecord differs from encodeChat (err %v)", err)
				}
				_, all, err := tk.EncodeRecord(rec, true)
				if err != nil || len(all) != len(ids) || slices.Contains(all, false) {
					t.Errorf("EncodeRecord(trainOnAll) mask is not all true (err %v)", err)
				}
			}
		})
	}
}

// maskedText shows the masked tokens of ids in brackets, for failures.
func maskedText(tk *Tokenizer, ids []int32, mask []bool) string {
	var b strings.Builder
	for i, id := range ids {
		s := tk.Decode([]int32{id})
		if mask[i] {
			s = "[" + s + "]"
		}
		b.WriteString(s)
	}
	return b.String()
}

func TestEncodeTextMatchesHF(t *testing.T) {
	tk := loadDefault(t)
	in, out := loadHF(t)
	for i, c := range in.Texts {
		want := out.Texts[i]
		t.Run(c.Name, func(t *testing.T) {
			got := tk.Encode(c.Text)
			if !slices.Equal(got, want.IDs) {
				t.Errorf("Encode differs from tokenizer.encode:\n got %v\nwant %v", got, want.IDs)
			}
			if d := tk.Decode(want.IDs); d != want.Decoded {
				t.Errorf("Decode differs from tokenizer.decode:\n got %q\nwant %q", d, want.Decoded)
			}
			// Decoding need not give the text back: Qwen's normalizer
			// applies NFC first (e + U+0301 decodes as é).
		})
	}
}

func TestEncodePromptCompletionMatchesHF(t *testing.T) {
	tk := loadDefault(t)
	in, out := loadHF(t)
	eot, _ := tk.TokenID(EndOfText)
	for i, c := range in.FIM {
		want := out.FIM[i]
		t.Run(c.Name, func(t *testing.T) {
			rec := &artifacts.Record{Prompt: c.Prompt, Completion: c.Completion}
			ids, mask, err := tk.EncodeRecord(rec, false)
			if err != nil {
				t.Fatal(err)
			}
			wantIDs := slices.Concat(want.PromptIDs, want.CompletionIDs)
			if !strings.HasSuffix(c.Completion, EndOfText) {
				wantIDs = append(wantIDs, eot)
			}
			if !slices.Equal(ids, wantIDs) {
				t.Errorf("ids:\n got %v\nwant %v", ids, wantIDs)
			}
			if ids[len(ids)-1] != eot {
				t.Errorf("last id %d, want %s", ids[len(ids)-1], EndOfText)
			}
			for j, m := range mask {
				if m != (j >= len(want.PromptIDs)) {
					t.Fatalf("mask[%d] = %v with a %d-token prompt", j, m, len(want.PromptIDs))
				}
			}
			// Where the prompt ends with a special token, encoding the
			// parts separately equals encoding the concatenation.
			if strings.HasSuffix(c.Prompt, FIMMiddle) && !slices.Equal(slices.Concat(want.PromptIDs, want.CompletionIDs), want.ConcatIDs) {
				t.Errorf("prompt+completion ids differ from the concatenation's")
			}
		})
	}
}

// TestPyJSONMatchesTojson checks the JSON writer against the output of the
// templates' tojson filter (Python's json.dumps) on numbers, strings and
// objects with repeated keys.
func TestPyJSONMatchesTojson(t *testing.T) {
	in, out := loadHF(t)
	for i, doc := range in.JSONValues {
		var b strings.Builder
		if err := pyJSON(&b, json.RawMessage(doc)); err != nil {
			t.Errorf("pyJSON(%s): %v", doc, err)
			continue
		}
		if got := b.String(); got != out.JSONValues[i] {
			t.Errorf("pyJSON(%s) = %s, want %s", doc, got, out.JSONValues[i])
		}
	}
}
