package tokenizer

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/pipeml/pipe/artifacts"
)

// EncodeRecord returns the token ids of a training record and its loss
// mask (lossMask[i] is true where the loss is computed on predicting
// ids[i]). With trainOnAll every token is in the mask.
//
// A chat record is rendered with [RenderChat] (no generation prompt) and
// the whole text is encoded in one call, so ids are exactly Hugging Face's
// apply_chat_template(messages, tools=tools, tokenize=True). The mask
// selects what the assistant produced, as completion-only ("assistant
// only") loss does in Qwen's SFT and in TRL: for every assistant turn, the
// text from just after "<|im_start|>assistant\n" through its closing
// "<|im_end|>" (content, <tool_call> blocks and <|im_end|>), but not the
// "<|im_start|>assistant\n" header nor the "\n" after <|im_end|>. An
// assistant message whose Weight is 0 is context only and stays out of the
// mask (claude_logs marks earlier turns placed before the taught one so). System,
// user and tool turns are out. A token is in the mask if it overlaps such
// a range; this is the rule of transformers'
// return_assistant_tokens_mask (char_to_token of the range's first and
// last character), and it matters only where BPE merges the header's "\n"
// with whitespace that opens the content. The chat template of the
// tokenizer's folder must be the Qwen2.5 one.
//
// A prompt/completion record (FIM) gives the ids of Prompt followed by
// those of Completion, each encoded on its own, so the completion always
// starts on a token boundary (this equals encoding the concatenation when
// the prompt ends with a special token such as <|fim_middle|>); the mask
// covers the completion. If the completion does not already end with
// <|endoftext|>, its token is appended, in the mask, so the model learns
// to stop.
func (t *Tokenizer) EncodeRecord(rec *artifacts.Record, trainOnAll bool) (ids []int32, lossMask []bool, err error) {
	defer runtime.KeepAlive(t)
	switch {
	case rec.IsChat():
		if rec.Prompt != "" || rec.Completion != "" {
			return nil, nil, errors.New("record has both messages and prompt/completion")
		}
		return t.encodeChat(rec.Messages, rec.Tools, false, trainOnAll)
	case rec.Completion != "":
		return t.encodePromptCompletion(rec, trainOnAll)
	case rec.Prompt != "":
		return nil, nil, errors.New("prompt/completion record has an empty completion")
	default:
		return nil, nil, errors.New("record has neither messages nor prompt/completion")
	}
}

// encodeChat renders and encodes a conversation and computes its mask.
func (t *Tokenizer) encodeChat(msgs []artifacts.Message, tools []artifacts.Tool, addGenerationPrompt, trainOnAll bool) ([]int32, []bool, error) {
	if !t.qwenTemplate {
		where := t.configPath
		if where == "" {
			where = t.dir + " (no tokenizer_config.json)"
		}
		return nil, nil, fmt.Errorf("%s: the chat template is not the Qwen2.5 template that package tokenizer renders", where)
	}
	var r chatRenderer
	if err := r.render(msgs, tools, addGenerationPrompt); err != nil {
		return nil, nil, err
	}
	ids, offs := t.encode(r.b.String(), !trainOnAll)
	mask := make([]bool, len(ids))
	if trainOnAll {
		for i := range mask {
			mask[i] = true
		}
		return ids, mask, nil
	}
	// Both the spans and the tokens are in text order: sweep them together.
	s := 0
	for i, o := range offs {
		for s < len(r.assistant) && r.assistant[s][1] <= o[0] {
			s++
		}
		if s == len(r.assistant) {
			break
		}
		mask[i] = o[1] > r.assistant[s][0] && o[0] < r.assistant[s][1]
	}
	return ids, mask, nil
}

func (t *Tokenizer) encodePromptCompletion(rec *artifacts.Record, trainOnAll bool) ([]int32, []bool, error) {
	eot, ok := t.byContent[EndOfText]
	if !ok {
		return nil, nil, fmt.Errorf("%s has no %s token to end completions with", t.dir, EndOfText)
	}
	ids := t.Encode(rec.Prompt)
	nPrompt := len(ids)
	completion := t.Encode(rec.Completion)
	ids = append(ids, completion...)
	if !strings.HasSuffix(rec.Completion, EndOfText) {
		ids = append(ids, eot)
	}
	mask := make([]bool, len(ids))
	for i := range mask {
		mask[i] = trainOnAll || i >= nPrompt
	}
	return ids, mask, nil
}
