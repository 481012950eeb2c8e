package checkpoint

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pipeml/pipe/ml/safetensors"
)

// TinySeed is the seed of the default tiny model.
const TinySeed = 20250101

// tinyName names the tiny model's folder; change the version whenever
// TinyConfig, TinySeed or the generator changes, so caches regenerate.
const tinyName = "qwen2-tiny-v2"

// TinyStd is the spread of the tiny model's random weights. It is larger
// than HF's 0.02 on purpose: with a hidden size of 32 and a frozen, tied
// 151,936-token head, weights of 0.02 give logits so small that the model
// predicts a near-uniform distribution whatever LoRA does (the loss cannot
// fall far below ln(151936) = 11.93), and the CPU demo would show nothing
// learning. At 0.5 the adapters can move the loss by several nats in a few
// dozen steps.
const TinyStd = 0.5

// tinyStamp is written last, so a folder without it is incomplete.
const tinyStamp = ".complete"

// DefaultCacheDir returns ${PIPE_CACHE_DIR:-~/.cache/pipe}.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("PIPE_CACHE_DIR"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".cache", "pipe"), nil
}

// DefaultTokenizerDir returns the folder of the Qwen2.5 tokenizer files as
// package tokenizer's Default finds it ($PIPE_TOKENIZER, else
// <cache>/tokenizers/qwen2.5), or "" when it has no tokenizer.json. It is
// repeated here so that this package does not link the tokenizer library.
func DefaultTokenizerDir() string {
	dir := os.Getenv("PIPE_TOKENIZER")
	if dir == "" {
		cache, err := DefaultCacheDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(cache, "tokenizers", "qwen2.5")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		dir = filepath.Dir(dir) // PIPE_TOKENIZER may name tokenizer.json itself.
	}
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		return ""
	}
	return dir
}

// EnsureTiny returns the folder of the default tiny model (TinyConfig, seed
// TinySeed, spread TinyStd, float32 weights) under cacheDir/models, generating it first if
// it is missing; cacheDir "" means DefaultCacheDir. Generation is
// deterministic and takes well under a second, so nothing is downloaded.
// The tokenizer files of DefaultTokenizerDir are copied in when available,
// also into a folder generated before they were.
func EnsureTiny(cacheDir string) (string, error) {
	if cacheDir == "" {
		var err error
		if cacheDir, err = DefaultCacheDir(); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(cacheDir, "models", tinyName)
	tok := DefaultTokenizerDir()
	if _, err := os.Stat(filepath.Join(dir, tinyStamp)); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil && tok != "" {
			if _, err := CopyTokenizer(tok, dir); err != nil {
				return "", err
			}
		}
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+tinyName+".tmp*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := WriteRandom(tmp, TinyConfig(), RandomOptions{Seed: TinySeed, DType: safetensors.F32, Std: TinyStd, TokenizerDir: tok}); err != nil {
		return "", fmt.Errorf("generating the tiny model: %w", err)
	}
	stamp, _ := json.Marshal(map[string]any{"seed": TinySeed, "name": tinyName})
	if err := os.WriteFile(filepath.Join(tmp, tinyStamp), stamp, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another process may have finished first; its folder is as good.
		if _, serr := os.Stat(filepath.Join(dir, tinyStamp)); serr == nil {
			return dir, nil
		}
		// Otherwise dir is a stale, incomplete folder: replace it.
		if rerr := os.RemoveAll(dir); rerr != nil {
			return "", rerr
		}
		if err := os.Rename(tmp, dir); err != nil {
			return "", err
		}
	}
	return dir, nil
}
