package eval

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pipeml/pipe/artifacts"
)

// Tokenizer is what evaluation needs of a tokenizer; *tokenizer.Tokenizer
// implements it.
type Tokenizer interface {
	// EncodeRecord returns a record's ids and its training loss mask.
	EncodeRecord(rec *artifacts.Record, trainOnAll bool) (ids []int32, lossMask []bool, err error)
	// Encode tokenizes text, recognising special tokens inside it.
	Encode(text string) []int32
	// Decode turns ids back into text.
	Decode(ids []int32) string
	// TokenID returns the id of a special token such as "<|im_end|>".
	TokenID(content string) (int32, bool)
}

// Record kinds, the first split of the loss tables.
const (
	KindChat       = "chat"       // records with messages
	KindFIM        = "fim"        // prompt/completion records whose prompt holds <|fim_middle|>
	KindCompletion = "completion" // other prompt/completion records
)

// The Qwen2.5 FIM and end-of-text tokens as they appear in text.
const (
	fimMiddle = "<|fim_middle|>"
	endOfText = "<|endoftext|>"
)

// StopTokenNames are the special tokens that end a generation: Qwen2.5's
// end of text and end of turn, and every FIM and repository-level marker
// (a FIM completion that emits one has left the middle).
var StopTokenNames = []string{
	"<|endoftext|>", "<|im_end|>", "<|im_start|>",
	"<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
	"<|repo_name|>", "<|file_sep|>",
}

// recordKind classifies rec.
func recordKind(rec *artifacts.Record) string {
	switch {
	case rec.IsChat():
		return KindChat
	case strings.Contains(rec.Prompt, fimMiddle):
		return KindFIM
	}
	return KindCompletion
}

// recordSource is meta.source, or "unknown".
func recordSource(rec *artifacts.Record) string {
	if s := rec.MetaString("source"); s != "" {
		return s
	}
	return "unknown"
}

// lossExample is one tokenised record of the loss evaluation.
type lossExample struct {
	ids          []int32
	mask         []bool
	kind, source string
}

// fimExample is one infilling task: the prompt up to and including
// <|fim_middle|> and the reference middle.
type fimExample struct {
	Prompt, Middle string
	Source, Path   string
	Where          string // file:line of the record
}

// chatPrompt is one conversation to answer: the messages before the
// answer.
type chatPrompt struct {
	Messages []artifacts.Message
	Where    string
}

// DataStats counts what happened to the records of the loss evaluation.
type DataStats struct {
	Records   int `json:"records"`
	Examples  int `json:"examples"`
	Truncated int `json:"truncated"`
	// Dropped counts records left out, by reason: "too_long" (overlong =
	// "drop"), "no_loss_tokens" and "too_short" (fewer than two tokens).
	Dropped    map[string]int `json:"dropped,omitempty"`
	Tokens     int            `json:"tokens"`
	LossTokens int            `json:"loss_tokens"`
}

// readRecords calls fn for every record of the JSONL files at paths, in
// order, with the record's "file:line" (the file's base name, so that the
// report does not depend on where the inputs are stored).
func readRecords(paths []string, fn func(rec *artifacts.Record, where string) error) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		rr := artifacts.NewRecordReader(f, p)
		for {
			rec, err := rr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				return err
			}
			if err := fn(rec, fmt.Sprintf("%s:%d", filepath.Base(p), rr.Line())); err != nil {
				f.Close()
				return err
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// fimFromRecord returns the infilling task of a FIM record.
func fimFromRecord(rec *artifacts.Record, where string) fimExample {
	i := strings.LastIndex(rec.Prompt, fimMiddle)
	return fimExample{
		Prompt: rec.Prompt[:i+len(fimMiddle)],
		// The middle is what follows <|fim_middle|>: the part of the
		// prompt after it (none, in the usual form) and the completion,
		// without the end-of-text that teaches the model to stop.
		Middle: strings.TrimSuffix(rec.Prompt[i+len(fimMiddle):]+rec.Completion, endOfText),
		Source: recordSource(rec),
		Path:   rec.MetaString("path"),
		Where:  where,
	}
}

// chatFromRecord returns the record's first user turn with the system
// message before it, if any, as a prompt; ok is false when it has no user
// turn.
func chatFromRecord(rec *artifacts.Record, where string) (chatPrompt, bool) {
	var msgs []artifacts.Message
	for _, m := range rec.Messages {
		switch m.Role {
		case "system":
			if len(msgs) == 0 {
				msgs = append(msgs, artifacts.Message{Role: "system", Content: m.Content})
			}
		case "user":
			msgs = append(msgs, artifacts.Message{Role: "user", Content: m.Content})
			return chatPrompt{Messages: msgs, Where: where}, true
		}
	}
	return chatPrompt{}, false
}
