package quality

import (
	"context"

	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/tokenizer"
)

var _ stages.Keyer = (*stage)(nil)

// KeyParts puts the default tokenizer's files into the cache key when the
// max_tokens check uses it: token counts decide which records are kept.
func (s *stage) KeyParts(ctx context.Context, env *stages.Env) (map[string]string, error) {
	if s.cfg.MaxTokens == 0 {
		return nil, nil
	}
	return tokenizer.DefaultKeyParts()
}
