package eval

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/pipeml/pipe/ml/checkpoint"
	"github.com/pipeml/pipe/ml/hub"
)

// TinyModel is the model name that selects the random tiny Qwen2 of
// ml/checkpoint (generated on first use, nothing downloaded).
const TinyModel = "tiny"

// ResolveModel returns the checkpoint folder of model: the tiny model for
// "tiny", a folder (relative to workDir unless absolute) when one exists
// there, else a Hugging Face hub repository id resolved in the hub cache
// and downloaded if missing (ml/hub), unless offline or HF_HUB_OFFLINE=1.
func ResolveModel(ctx context.Context, model, workDir string, offline bool) (string, error) {
	if model == TinyModel {
		return checkpoint.EnsureTiny("")
	}
	p := model
	if !filepath.IsAbs(p) {
		p = filepath.Join(workDir, p)
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return p, nil
	}
	if !hub.IsRepoID(model) {
		return "", fmt.Errorf("model %q is neither %q, a folder, nor a hub repository id like Qwen/Qwen2.5-Coder-3B-Instruct", model, TinyModel)
	}
	return hub.Resolve(ctx, model, hub.Options{Offline: offline})
}

// ModelKey identifies the weights behind model for the cache key without
// reading them: for "tiny", the generator's folder name (versioned); for a
// folder, a hash of its config.json and of the size and safetensors header
// of each weight file (the header holds every tensor's name, dtype, shape
// and offsets); for a hub id, the id itself.
func ModelKey(model, workDir string) (string, error) {
	if model == TinyModel {
		dir, err := checkpoint.EnsureTiny("")
		if err != nil {
			return "", err
		}
		return "tiny:" + filepath.Base(dir), nil
	}
	p := model
	if !filepath.IsAbs(p) {
		p = filepath.Join(workDir, p)
	}
	fi, err := os.Stat(p)
	if err != nil || !fi.IsDir() {
		return "hub:" + model, nil
	}
	h := sha256.New()
	cfg, err := os.ReadFile(filepath.Join(p, checkpoint.ConfigFile))
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "config.json %d\n", len(cfg))
	h.Write(cfg)
	files, _ := filepath.Glob(filepath.Join(p, "*.safetensors"))
	sort.Strings(files)
	for _, f := range files {
		if err := hashHeader(h, f); err != nil {
			return "", err
		}
	}
	return "folder:" + hex.EncodeToString(h.Sum(nil)), nil
}

func hashHeader(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var n [8]byte
	if _, err := io.ReadFull(f, n[:]); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	size := binary.LittleEndian.Uint64(n[:])
	if size > 100<<20 {
		return fmt.Errorf("%s: safetensors header of %d bytes", path, size)
	}
	fmt.Fprintf(h, "%s %d %d\n", filepath.Base(path), st.Size(), size)
	_, err = io.CopyN(h, f, int64(size))
	return err
}
