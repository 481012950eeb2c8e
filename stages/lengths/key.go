package lengths

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/pipeml/pipe/artifacts"
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
	dir := tokenizer.DefaultDir()
	parts := map[string]string{}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
		d, _, err := artifacts.DigestFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // Map reports the missing tokenizer with what to do
		}
		if err != nil {
			return nil, err
		}
		parts["tokenizer/"+name] = string(d)
	}
	return parts, nil
}
