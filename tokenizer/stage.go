package tokenizer

// Helpers for stage kinds that count tokens: the cache-key parts of the
// default tokenizer, and the tokenizer a `tokenizer` input names.

import (
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/pipeml/pipe/artifacts"
)

// DefaultKeyParts returns the digests of the default tokenizer's files
// (DefaultDir), keyed "tokenizer/<file>", for stage kinds whose output
// depends on token counts and that use the default tokenizer: as cache-key
// parts (stages.Keyer) they make a changed tokenizer re-run the stage.
// Missing files are left out; the stage itself reports them when it loads
// the tokenizer.
func DefaultKeyParts() (map[string]string, error) {
	dir := DefaultDir()
	parts := map[string]string{}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
		d, _, err := artifacts.DigestFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		parts["tokenizer/"+name] = string(d)
	}
	return parts, nil
}

// LoadInput loads the tokenizer a stage's optional `tokenizer` input names
// (its first path), or the default one when the input is not set.
func LoadInput(paths []string) (*Tokenizer, error) {
	if len(paths) > 0 {
		return Load(paths[0])
	}
	return Default()
}
