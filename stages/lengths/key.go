package lengths

import (
	"context"

	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/tokenizer"
)

var _ stages.Keyer = (*Stage)(nil)

// KeyParts puts the default tokenizer's files into the cache key: token
// counts decide the output, and without a `tokenizer` input (whose content
// the engine hashes itself) nothing else would tell the engine that the
// tokenizer changed.
func (s *Stage) KeyParts(ctx context.Context, env *stages.Env) (map[string]string, error) {
	if len(env.Paths("tokenizer")) > 0 {
		return nil, nil
	}
	return tokenizer.DefaultKeyParts()
}
