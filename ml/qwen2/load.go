package qwen2

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/pipeml/pipe/ml/checkpoint"
	"github.com/pipeml/pipe/ml/quant"
	"github.com/zeebo/blake3"
)

// ConfigFromCheckpoint converts a Hugging Face config to the network's
// Config. checkpoint.Config has already folded transformers 5's
// rope_parameters into RopeTheta; rope scaling, which this network does
// not implement, is rejected.
func ConfigFromCheckpoint(c *checkpoint.Config) (Config, error) {
	theta := c.RopeTheta
	if len(c.RopeScaling) > 0 && string(c.RopeScaling) != "null" {
		return Config{}, fmt.Errorf("rope_scaling %s is not supported", c.RopeScaling)
	}
	if theta == 0 {
		theta = 10000 // transformers' default
	}
	if c.HiddenAct != "" && c.HiddenAct != "silu" {
		return Config{}, fmt.Errorf("hidden_act %q is not supported (only \"silu\")", c.HiddenAct)
	}
	if c.MLPBias {
		return Config{}, fmt.Errorf("mlp_bias is not supported")
	}
	cfg := Config{
		VocabSize: c.VocabSize, HiddenSize: c.HiddenSize, IntermediateSize: c.IntermediateSize,
		NumLayers: c.NumHiddenLayers, NumHeads: c.NumAttentionHeads, NumKVHeads: c.NumKeyValueHeads,
		HeadDim: c.HeadDimension(), RopeTheta: theta, RMSNormEps: c.RMSNormEps,
		TieWordEmbeddings: c.TieWordEmbeddings, AttentionBias: c.QKVBias(),
	}
	if cfg.NumKVHeads == 0 {
		cfg.NumKVHeads = cfg.NumHeads
	}
	if cfg.RMSNormEps == 0 {
		cfg.RMSNormEps = 1e-6
	}
	return cfg, cfg.Validate()
}

// checkpointSource reads base tensors from an open checkpoint.
type checkpointSource struct{ m *checkpoint.Model }

// CheckpointSource adapts an open checkpoint to WeightSource.
func CheckpointSource(m *checkpoint.Model) WeightSource { return checkpointSource{m} }

func (s checkpointSource) Has(name string) bool {
	_, ok := s.m.Weights.Tensor(name)
	return ok
}

func (s checkpointSource) Float32(name string) ([]int, []float32, error) {
	t, err := s.m.Tensor(name)
	if err != nil {
		return nil, nil, err
	}
	v, err := t.Float32()
	return t.Shape, v, err
}

// Load opens the checkpoint folder dir and builds a Model with its base
// weights (converted or quantised as opts says). The checkpoint is closed
// before Load returns.
func Load(dir string, opts Options) (*Model, error) {
	ck, err := checkpoint.Open(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	cfg, err := ConfigFromCheckpoint(ck.Config)
	if err != nil {
		return nil, fmt.Errorf("%s/config.json: %v", dir, err)
	}
	m, err := New(cfg, opts)
	if err != nil {
		return nil, err
	}
	if err := m.LoadBase(CheckpointSource(ck), 0); err != nil {
		return nil, err
	}
	return m, nil
}

// LoadCached is Load with the quantised base kept in cacheDir, so that
// quantising happens once per checkpoint and scheme: the first load writes
// the quantised linear weights there (package quant's file, written to a
// temporary name and renamed, so a crash leaves no half entry) and later
// loads read them instead of quantising again. An entry is named by the
// scheme and each weight file's name, size and modification time, so a
// changed checkpoint gets a new one. It reports whether the entry was
// reused. Without quantisation, or with cacheDir "", it is Load.
func LoadCached(ctx context.Context, dir string, opts Options, cacheDir string) (*Model, bool, error) {
	if opts.Quantization == QuantNone || opts.Quantization == "" || cacheDir == "" {
		m, err := Load(dir, opts)
		return m, false, err
	}
	key, err := quantCacheKey(dir, opts.Quantization)
	if err != nil {
		return nil, false, err
	}
	ck, err := checkpoint.Open(dir)
	if err != nil {
		return nil, false, err
	}
	defer ck.Close()
	cfg, err := ConfigFromCheckpoint(ck.Config)
	if err != nil {
		return nil, false, fmt.Errorf("%s/config.json: %v", dir, err)
	}
	path := filepath.Join(cacheDir, "quantized", key+".safetensors")
	ws, _, err := quant.ReadFile(path)
	hit := err == nil
	if !hit {
		if ws, err = quant.QuantizeModel(ctx, ck, quant.Scheme(opts.Quantization)); err != nil {
			return nil, false, err
		}
		if err := writeQuantized(path, ws, dir); err != nil {
			return nil, false, err
		}
	}
	m, err := New(cfg, opts)
	if err != nil {
		return nil, false, err
	}
	if err := m.LoadBase(WithQuantized(CheckpointSource(ck), ws), 0); err != nil {
		return nil, false, err
	}
	return m, hit, nil
}

// quantCacheKey names the cached quantised base of the checkpoint in dir.
func quantCacheKey(dir string, q Quantization) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("%s: no safetensors files", dir)
	}
	sort.Strings(files)
	h := blake3.New()
	fmt.Fprintf(h, "quantized-base v1\x00%s\x00", q)
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		abs, _ := filepath.Abs(f)
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", abs, fi.Size(), fi.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

func writeQuantized(path string, ws []*quant.Weight, source string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	if err := quant.WriteFile(tmp, ws, map[string]string{"source": source}); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
