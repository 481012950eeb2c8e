package tokenizer

/*
#cgo LDFLAGS: -L${SRCDIR}/../.lib
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/daulet/tokenizers"
)

// Names of the Qwen2.5 special tokens, for [Tokenizer.TokenID].
const (
	EndOfText     = "<|endoftext|>"
	IMStart       = "<|im_start|>"
	IMEnd         = "<|im_end|>"
	ToolCallStart = "<tool_call>"
	ToolCallEnd   = "</tool_call>"
	FIMPrefix     = "<|fim_prefix|>"
	FIMMiddle     = "<|fim_middle|>"
	FIMSuffix     = "<|fim_suffix|>"
	FIMPad        = "<|fim_pad|>"
	RepoName      = "<|repo_name|>"
	FileSep       = "<|file_sep|>"
)

// Tokenizer encodes and decodes text with a Hugging Face tokenizer.json.
//
// A Tokenizer is immutable once loaded: all its methods are safe for
// concurrent use by any number of goroutines, and calling them in parallel
// is the intended way to tokenize large datasets fast. The Rust memory it
// holds is released when the Tokenizer becomes unreachable.
type Tokenizer struct {
	tk        *tokenizers.Tokenizer
	dir       string
	vocabSize int
	added     []AddedToken     // sorted by id
	byContent map[string]int32 // added tokens by content

	template     string // chat_template of tokenizer_config.json, or ""
	configPath   string // path of tokenizer_config.json, or "" if absent
	qwenTemplate bool   // template is the Qwen2.5 template RenderChat implements
	eos, pad     string // eos_token and pad_token of tokenizer_config.json

	nulOnce sync.Once
	nulID   int32 // id of the token for a lone NUL byte, or -1
	// standInID is the id of the byte-level token of byte 0x01 when that
	// byte can stand in for NUL in encoding (see encode), or -1.
	standInID int32
}

// AddedToken is a token that the tokenizer matches in text before running
// its model: Qwen2.5's control tokens such as <|im_start|>.
type AddedToken struct {
	ID      int32
	Content string
	// Special is true for special tokens (skipped by decoding with
	// skip_special_tokens in Hugging Face).
	Special bool
}

// Load reads the tokenizer in dir: tokenizer.json (required) and
// tokenizer_config.json (optional; it supplies the chat template and the
// names of the end-of-sequence and padding tokens).
func Load(dir string) (*Tokenizer, error) {
	jsonPath := filepath.Join(dir, "tokenizer.json")
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, err
	}
	var file struct {
		AddedTokens []struct {
			ID      int32  `json:"id"`
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("%s: %v", jsonPath, err)
	}
	tk, err := tokenizers.FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", jsonPath, err)
	}
	t := &Tokenizer{
		tk:        tk,
		dir:       dir,
		vocabSize: int(tk.VocabSize()),
		byContent: make(map[string]int32, len(file.AddedTokens)),
		nulID:     -1,
		standInID: -1,
	}
	runtime.AddCleanup(t, func(tk *tokenizers.Tokenizer) { tk.Close() }, tk)
	for _, a := range file.AddedTokens {
		t.added = append(t.added, AddedToken{ID: a.ID, Content: a.Content, Special: a.Special})
		t.byContent[a.Content] = a.ID
	}
	slices.SortFunc(t.added, func(a, b AddedToken) int { return int(a.ID - b.ID) })
	if err := t.loadConfig(filepath.Join(dir, "tokenizer_config.json")); err != nil {
		return nil, err
	}
	return t, nil
}

// loadConfig reads tokenizer_config.json if it exists.
func (t *Tokenizer) loadConfig(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var cfg struct {
		ChatTemplate       json.RawMessage `json:"chat_template"`
		EOSToken           json.RawMessage `json:"eos_token"`
		PadToken           json.RawMessage `json:"pad_token"`
		AddedTokensDecoder map[string]struct {
			Content string `json:"content"`
		} `json:"added_tokens_decoder"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	t.configPath = path
	t.template, err = chatTemplate(cfg.ChatTemplate)
	if err != nil {
		return fmt.Errorf("%s: chat_template: %v", path, err)
	}
	t.qwenTemplate = t.template == qwen25Template
	if t.eos, err = tokenName(cfg.EOSToken); err != nil {
		return fmt.Errorf("%s: eos_token: %v", path, err)
	}
	if t.pad, err = tokenName(cfg.PadToken); err != nil {
		return fmt.Errorf("%s: pad_token: %v", path, err)
	}
	// Hugging Face adds the tokens of added_tokens_decoder to the tokenizer;
	// the Rust tokenizer knows only those of tokenizer.json. Refuse a
	// folder where the two disagree rather than tokenize differently.
	for id, a := range cfg.AddedTokensDecoder {
		got, ok := t.byContent[a.Content]
		if !ok || fmt.Sprint(got) != id {
			return fmt.Errorf("%s: added token %q (id %s) is not an added token of %s with that id",
				path, a.Content, id, filepath.Join(t.dir, "tokenizer.json"))
		}
	}
	return nil
}

// chatTemplate returns the template in a chat_template field, which is a
// string or a list of {name, template} (the one named "default" is used).
func chatTemplate(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return "", errors.New("neither a string nor a list of {name, template}")
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
	}
	return "", nil
}

// tokenName returns the content of a token field of tokenizer_config.json:
// a string, an {"content": ...} object, or null.
func tokenName(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", errors.New("neither a string nor an object with content")
	}
	return obj.Content, nil
}

// DefaultDir returns the folder Default loads: $PIPE_TOKENIZER if set, else
// ${PIPE_CACHE_DIR:-$HOME/.cache/pipe}/tokenizers/qwen2.5, the folder that
// scripts/qwen-tokenizer.sh fills.
func DefaultDir() string {
	if d := os.Getenv("PIPE_TOKENIZER"); d != "" {
		return d
	}
	cache := os.Getenv("PIPE_CACHE_DIR")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		cache = filepath.Join(home, ".cache", "pipe")
	}
	return filepath.Join(cache, "tokenizers", "qwen2.5")
}

var (
	defaultMu sync.Mutex
	defaults  = map[string]*Tokenizer{}
)

// Default returns the Qwen2.5 tokenizer in [DefaultDir]. Loading takes a
// fraction of a second, so the result is kept: later calls for the same
// folder return the same (immutable, concurrency-safe) Tokenizer.
func Default() (*Tokenizer, error) {
	dir := DefaultDir()
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if t := defaults[dir]; t != nil {
		return t, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		return nil, fmt.Errorf("no Qwen2.5 tokenizer in %s: run `go tool task deps` (or scripts/qwen-tokenizer.sh) to fetch it, or set PIPE_TOKENIZER to a folder holding tokenizer.json", dir)
	}
	t, err := Load(dir)
	if err != nil {
		return nil, err
	}
	defaults[dir] = t
	return t, nil
}

// Dir is the folder the tokenizer was loaded from.
func (t *Tokenizer) Dir() string { return t.dir }

// VocabSize is the number of token ids, the added tokens included (151,665
// for Qwen2.5; the model's embedding has 151,936 rows, padded).
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// AddedTokens lists the added tokens (special and control tokens) by id.
func (t *Tokenizer) AddedTokens() []AddedToken { return slices.Clone(t.added) }

// TokenID returns the id of an added token by its content, such as
// [IMEnd]; ok is false if the tokenizer has no such token.
func (t *Tokenizer) TokenID(content string) (id int32, ok bool) {
	id, ok = t.byContent[content]
	return id, ok
}

// EOS returns the end-of-sequence token named by tokenizer_config.json
// (<|im_end|> for the Qwen2.5 instruct tokenizer) and its id; ok is false
// if the config names none.
func (t *Tokenizer) EOS() (content string, id int32, ok bool) {
	id, ok = t.byContent[t.eos]
	return t.eos, id, ok && t.eos != ""
}

// Pad returns the padding token named by tokenizer_config.json
// (<|endoftext|> for Qwen2.5) and its id; ok is false if it names none.
func (t *Tokenizer) Pad() (content string, id int32, ok bool) {
	id, ok = t.byContent[t.pad]
	return t.pad, id, ok && t.pad != ""
}

// ChatTemplate is the Jinja chat template of tokenizer_config.json, or "".
func (t *Tokenizer) ChatTemplate() string { return t.template }

// Encode returns the token ids of text, as Hugging Face's
// tokenizer.encode(text, add_special_tokens=False) does: added tokens
// written in the text (such as <|im_end|> or <|fim_middle|>) become their
// single token ids, and no BOS or EOS is added.
//
// Invalid UTF-8, which a Python string cannot hold, is replaced with
// U+FFFD (one per run of bad bytes). NUL bytes, which the C interface
// cannot pass, give the same ids as in Hugging Face for byte-level
// vocabularies like Qwen's (byte 0x01 is encoded in their place and its
// token swapped back); for other vocabularies the text between NUL bytes
// is encoded piece by piece.
func (t *Tokenizer) Encode(text string) []int32 {
	ids, _ := t.encode(text, false)
	return ids
}

// EncodeBatch returns Encode(texts[i]) for every i, encoding on up to
// GOMAXPROCS goroutines at once. The result does not depend on the
// parallelism.
func (t *Tokenizer) EncodeBatch(texts []string) [][]int32 {
	out := make([][]int32, len(texts))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(texts)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(texts) {
					return
				}
				out[i] = t.Encode(texts[i])
			}
		})
	}
	wg.Wait()
	return out
}

// Count returns len(t.Encode(text)).
func (t *Tokenizer) Count(text string) int {
	ids, _ := t.encode(text, false)
	return len(ids)
}

// encode returns the ids of text and, if offsets is true, the byte range
// of text that each token covers.
func (t *Tokenizer) encode(text string, offsets bool) ([]int32, [][2]int) {
	defer runtime.KeepAlive(t)
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	if strings.IndexByte(text, 0) < 0 {
		return t.encodeC(text, offsets, 0, nil, nil)
	}
	nul := t.nulToken()
	if t.standInID >= 0 {
		// Encode byte 0x01 in place of each NUL: both are control
		// characters of the same class for the pre-tokenizer, and neither
		// takes part in any merge, so the ids differ only there.
		ids, offs := t.encodeC(strings.ReplaceAll(text, "\x00", "\x01"), true, 0, nil, nil)
		for i, o := range offs {
			if ids[i] == t.standInID && o[1] == o[0]+1 && text[o[0]] == 0 {
				ids[i] = nul
			}
		}
		if !offsets {
			offs = nil
		}
		return ids, offs
	}
	// Otherwise encode the text between NUL bytes piece by piece.
	var ids []int32
	var offs [][2]int
	base := 0
	for {
		i := strings.IndexByte(text[base:], 0)
		end := len(text)
		if i >= 0 {
			end = base + i
		}
		ids, offs = t.encodeC(text[base:end], offsets, base, ids, offs)
		if i < 0 {
			return ids, offs
		}
		if nul >= 0 {
			ids = append(ids, nul)
			if offsets {
				offs = append(offs, [2]int{end, end + 1})
			}
		}
		base = end + 1
	}
}

// encodeC encodes a text free of NUL bytes through the Rust library and
// appends the result (offsets shifted by base) to ids and offs.
func (t *Tokenizer) encodeC(text string, offsets bool, base int, ids []int32, offs [][2]int) ([]int32, [][2]int) {
	if text == "" {
		return ids, offs
	}
	var enc tokenizers.Encoding
	if offsets {
		enc = t.tk.EncodeWithOptions(text, false, tokenizers.WithReturnOffsets())
	} else {
		enc = t.tk.EncodeWithOptions(text, false)
	}
	ids = slices.Grow(ids, len(enc.IDs))
	for _, id := range enc.IDs {
		ids = append(ids, int32(id))
	}
	if offsets {
		offs = slices.Grow(offs, len(enc.Offsets))
		for _, o := range enc.Offsets {
			offs = append(offs, [2]int{base + int(o[0]), base + int(o[1])})
		}
	}
	return ids, offs
}

// nulToken returns the id of the token for a lone NUL byte: "Ā" (U+0100)
// in byte-level BPE vocabularies such as Qwen's, "<0x00>" with
// SentencePiece byte fallback, or -1 (NUL bytes are then dropped). It also
// sets standInID when the vocabulary is byte-level and neither byte 0x00
// nor 0x01 occurs in any token but its own.
func (t *Tokenizer) nulToken() int32 {
	t.nulOnce.Do(func() {
		data, err := os.ReadFile(filepath.Join(t.dir, "tokenizer.json"))
		if err != nil {
			return
		}
		var file struct {
			Model struct {
				Vocab json.RawMessage `json:"vocab"`
			} `json:"model"`
		}
		if json.Unmarshal(data, &file) != nil || !bytes.HasPrefix(bytes.TrimSpace(file.Model.Vocab), []byte("{")) {
			return
		}
		var vocab map[string]int32
		if json.Unmarshal(file.Model.Vocab, &vocab) != nil {
			return
		}
		for _, name := range []string{"\u0100", "<0x00>"} {
			if id, ok := vocab[name]; ok {
				t.nulID = id
				break
			}
		}
		nulByte, ok0 := vocab["\u0100"]
		standIn, ok1 := vocab["\u0101"]
		if !ok0 || !ok1 || t.nulID != nulByte {
			return
		}
		for tok := range vocab {
			if len(tok) > 2 && strings.ContainsAny(tok, "\u0100\u0101") {
				return
			}
		}
		t.standInID = standIn
	})
	return t.nulID
}

// Decode returns the text of ids, special tokens included, as Hugging
// Face's tokenizer.decode(ids) does. Bytes that do not form valid UTF-8
// (a sequence cut inside a character) become U+FFFD.
func (t *Tokenizer) Decode(ids []int32) string {
	defer runtime.KeepAlive(t)
	if len(ids) == 0 {
		return ""
	}
	u := make([]uint32, len(ids))
	for i, id := range ids {
		u[i] = uint32(id)
	}
	// The C interface returns a NUL-terminated string, and nothing at all
	// when the text holds a NUL byte: then decode the pieces between the
	// NUL-byte tokens separately (a lone byte token ends any UTF-8
	// sequence, so this changes nothing else).
	if s := t.tk.Decode(u, false); s != "" {
		return s
	}
	nul := t.nulToken()
	if nul < 0 || !slices.Contains(u, uint32(nul)) {
		return ""
	}
	var b strings.Builder
	start := 0
	for i, id := range u {
		if int32(id) == nul {
			b.WriteString(t.tk.Decode(u[start:i], false))
			b.WriteByte(0)
			start = i + 1
		}
	}
	b.WriteString(t.tk.Decode(u[start:], false))
	return b.String()
}
