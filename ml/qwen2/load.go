package qwen2

import (
	"fmt"

	"github.com/pipeml/pipe/ml/checkpoint"
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
