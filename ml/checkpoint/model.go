package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/pipeml/pipe/ml/safetensors"
)

// ConfigFile is the name of a checkpoint's configuration.
const ConfigFile = "config.json"

// TokenizerFiles lists the tokenizer and generation files a checkpoint
// folder may hold, in the order they are looked for.
var TokenizerFiles = []string{
	"tokenizer.json",
	"tokenizer_config.json",
	"vocab.json",
	"merges.txt",
	"special_tokens_map.json",
	"added_tokens.json",
	"generation_config.json",
}

// Model is an open checkpoint folder. Its weights are memory-mapped; Close
// releases them.
type Model struct {
	Dir     string
	Config  *Config
	Weights *safetensors.Set
	// Tokenizer lists the files of TokenizerFiles present in Dir.
	Tokenizer []string
}

// HasTokenizer reports whether the folder has a tokenizer.json.
func (m *Model) HasTokenizer() bool { return slices.Contains(m.Tokenizer, "tokenizer.json") }

// Open opens a checkpoint folder: it reads config.json, memory-maps the
// weights (model.safetensors or the shards of
// model.safetensors.index.json), checks that every weight the configuration
// needs is present with the right shape, and detects the tokenizer files.
func Open(dir string) (*Model, error) {
	cfg, err := ReadConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	w, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	m := &Model{Dir: dir, Config: cfg, Weights: w}
	if err := m.check(); err != nil {
		w.Close()
		return nil, err
	}
	for _, name := range TokenizerFiles {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			m.Tokenizer = append(m.Tokenizer, name)
		}
	}
	return m, nil
}

func (m *Model) check() error {
	var errs []error
	for _, w := range Weights(m.Config) {
		t, ok := m.Weights.Tensor(w.Name)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: missing weight %q", m.Dir, w.Name))
			continue
		}
		if !slices.Equal(t.Shape, w.Shape) {
			errs = append(errs, fmt.Errorf("%s: weight %q has shape %v, config.json implies %v", t.File, w.Name, t.Shape, w.Shape))
		}
		if !t.DType.IsFloat() {
			errs = append(errs, fmt.Errorf("%s: weight %q has dtype %s, want a float type", t.File, w.Name, t.DType))
		}
		if len(errs) >= 5 {
			break
		}
	}
	return errors.Join(errs...)
}

// Tensor returns the named weight, with an error naming the folder when it
// is missing.
func (m *Model) Tensor(name string) (*safetensors.Tensor, error) {
	t, ok := m.Weights.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: missing weight %q", m.Dir, name)
	}
	return t, nil
}

// Close releases the memory-mapped weights.
func (m *Model) Close() error { return m.Weights.Close() }

// WeightKind tells how a weight is initialised and whether it is a linear
// projection that quantisation applies to.
type WeightKind int

// The kinds of weights of a Qwen2 model.
const (
	KindEmbedding WeightKind = iota // token embedding (and untied LM head)
	KindLinear                      // [out, in] projection weight
	KindBias                        // projection bias
	KindNorm                        // RMSNorm scale
)

// WeightSpec names one weight of a model and its shape.
type WeightSpec struct {
	Name  string
	Shape []int
	Kind  WeightKind
}

// LinearNames lists the seven projections of a decoder layer, in the order
// transformers registers them.
var LinearNames = []string{
	"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
	"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
}

// Weights lists the weights a config needs, with Hugging Face names and
// shapes, in the order of transformers' state_dict.
func Weights(c *Config) []WeightSpec {
	h, inter, hd := c.HiddenSize, c.IntermediateSize, c.HeadDimension()
	q, kv := c.NumAttentionHeads*hd, c.NumKeyValueHeads*hd
	ws := []WeightSpec{{"model.embed_tokens.weight", []int{c.VocabSize, h}, KindEmbedding}}
	for i := range c.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", i)
		add := func(name string, kind WeightKind, shape ...int) {
			ws = append(ws, WeightSpec{p + name, shape, kind})
		}
		add("self_attn.q_proj.weight", KindLinear, q, h)
		if c.QKVBias() {
			add("self_attn.q_proj.bias", KindBias, q)
		}
		add("self_attn.k_proj.weight", KindLinear, kv, h)
		if c.QKVBias() {
			add("self_attn.k_proj.bias", KindBias, kv)
		}
		add("self_attn.v_proj.weight", KindLinear, kv, h)
		if c.QKVBias() {
			add("self_attn.v_proj.bias", KindBias, kv)
		}
		add("self_attn.o_proj.weight", KindLinear, h, q)
		add("mlp.gate_proj.weight", KindLinear, inter, h)
		add("mlp.up_proj.weight", KindLinear, inter, h)
		add("mlp.down_proj.weight", KindLinear, h, inter)
		add("input_layernorm.weight", KindNorm, h)
		add("post_attention_layernorm.weight", KindNorm, h)
	}
	ws = append(ws, WeightSpec{"model.norm.weight", []int{h}, KindNorm})
	if !c.TieWordEmbeddings {
		ws = append(ws, WeightSpec{"lm_head.weight", []int{c.VocabSize, h}, KindEmbedding})
	}
	return ws
}

// NumParameters returns the number of parameters of a config's weights.
func NumParameters(c *Config) int64 {
	var n int64
	for _, w := range Weights(c) {
		p := int64(1)
		for _, d := range w.Shape {
			p *= int64(d)
		}
		n += p
	}
	return n
}
