package quality

import (
	"testing"
)

// TestKeyPartsTokenizer checks that the tokenizer is part of the key
// exactly when the max_tokens check uses it.
func TestKeyPartsTokenizer(t *testing.T) {
	on, err := decode(t, `max_tokens = 100`).KeyParts(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if on["tokenizer/tokenizer.json"] == "" {
		t.Errorf("with max_tokens the key parts %v lack the tokenizer", on)
	}
	off, err := decode(t, `max_tokens = 0`).KeyParts(t.Context(), nil)
	if err != nil || len(off) != 0 {
		t.Errorf("without max_tokens: key parts %v, %v; want none", off, err)
	}
}
