package tokenizer

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
