package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
)

// Config is a Hugging Face config.json of a Qwen2 or Llama causal LM. Fields
// the network does not use are kept in Extra so that reading and writing a
// config preserves them.
type Config struct {
	Architectures         []string `json:"architectures,omitempty"`
	ModelType             string   `json:"model_type"`
	VocabSize             int      `json:"vocab_size"`
	HiddenSize            int      `json:"hidden_size"`
	IntermediateSize      int      `json:"intermediate_size"`
	NumHiddenLayers       int      `json:"num_hidden_layers"`
	NumAttentionHeads     int      `json:"num_attention_heads"`
	NumKeyValueHeads      int      `json:"num_key_value_heads"`
	HeadDim               int      `json:"head_dim,omitempty"`
	HiddenAct             string   `json:"hidden_act"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	RopeTheta             float64  `json:"rope_theta"`
	// RopeScaling is kept verbatim; the Qwen2.5 checkpoints have none.
	RopeScaling       json.RawMessage `json:"rope_scaling,omitempty"`
	RMSNormEps        float64         `json:"rms_norm_eps"`
	TieWordEmbeddings bool            `json:"tie_word_embeddings"`
	// AttentionBias is Llama's switch for q/k/v/o biases. Qwen2 configs do
	// not have it: Qwen2 always has q/k/v biases and no o bias.
	AttentionBias    *bool   `json:"attention_bias,omitempty"`
	MLPBias          bool    `json:"mlp_bias,omitempty"`
	AttentionDropout float64 `json:"attention_dropout"`
	InitializerRange float64 `json:"initializer_range"`
	UseSlidingWindow bool    `json:"use_sliding_window"`
	SlidingWindow    *int    `json:"sliding_window"`
	MaxWindowLayers  int     `json:"max_window_layers,omitempty"`
	// BOSTokenID and EOSTokenID are kept raw: Llama 3 has a list of EOS ids.
	BOSTokenID          json.RawMessage `json:"bos_token_id,omitempty"`
	EOSTokenID          json.RawMessage `json:"eos_token_id,omitempty"`
	TorchDtype          string          `json:"torch_dtype,omitempty"`
	TransformersVersion string          `json:"transformers_version,omitempty"`
	UseCache            bool            `json:"use_cache"`

	// Extra holds the fields of config.json this struct does not name.
	Extra map[string]json.RawMessage `json:"-"`
}

// Architecture names of the supported model types.
const (
	ModelTypeQwen2 = "qwen2"
	ModelTypeLlama = "llama"
)

// knownFields lists the JSON names of Config's fields.
var knownFields = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}()

// UnmarshalJSON decodes a config.json, keeping unknown fields in Extra.
func (c *Config) UnmarshalJSON(data []byte) error {
	type plain Config
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	for k, v := range all {
		if !knownFields[k] {
			if p.Extra == nil {
				p.Extra = map[string]json.RawMessage{}
			}
			p.Extra[k] = v
		}
	}
	*c = Config(p)
	return c.normaliseRope()
}

// normaliseRope folds the ways transformers writes the rotary settings into
// RopeTheta: transformers 4 writes rope_theta (and rope_scaling null),
// transformers 5 writes rope_parameters {rope_theta, rope_type} and may
// write rope_scaling {rope_type: "default"}. Only the default (unscaled)
// rotary embedding is supported; anything else stays in RopeScaling or
// Extra for Validate to reject.
func (c *Config) normaliseRope() error {
	if raw, ok := c.Extra["rope_parameters"]; ok && string(raw) != "null" {
		var rp struct {
			RopeTheta float64 `json:"rope_theta"`
			RopeType  string  `json:"rope_type"`
		}
		if err := json.Unmarshal(raw, &rp); err != nil {
			return fmt.Errorf("rope_parameters: %v", err)
		}
		if rp.RopeType != "" && rp.RopeType != "default" {
			return fmt.Errorf("rope_parameters: rope_type %q is not supported (only \"default\")", rp.RopeType)
		}
		if c.RopeTheta == 0 {
			c.RopeTheta = rp.RopeTheta
		}
	}
	if len(c.RopeScaling) > 0 && string(c.RopeScaling) != "null" {
		var rs struct {
			Type     string `json:"type"`
			RopeType string `json:"rope_type"`
		}
		if err := json.Unmarshal(c.RopeScaling, &rs); err == nil && rs.Type+rs.RopeType == "default" {
			c.RopeScaling = nil
		}
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000 // transformers' default
	}
	return nil
}

// MarshalJSON encodes the config with sorted keys and two-space
// indentation, as transformers' save_pretrained does, including Extra.
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config
	data, err := json.Marshal(plain(c))
	if err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, err
	}
	for k, v := range c.Extra {
		if !knownFields[k] {
			all[k] = v
		}
	}
	return json.MarshalIndent(all, "", "  ") // Maps marshal with sorted keys.
}

// ReadConfig reads and validates a config.json.
func ReadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		if se, ok := err.(*json.SyntaxError); ok {
			line := 1 + bytes.Count(data[:se.Offset], []byte("\n"))
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &c, nil
}

// WriteConfig writes c as path (sorted keys, trailing newline).
func WriteConfig(path string, c *Config) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, data, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	return os.WriteFile(path, out.Bytes(), 0o644)
}

// Validate reports the first field that makes the config unusable for a
// Qwen2-family network.
func (c *Config) Validate() error {
	switch {
	case c.ModelType != ModelTypeQwen2 && c.ModelType != ModelTypeLlama:
		return fmt.Errorf("model_type %q is not supported (want %q or %q)", c.ModelType, ModelTypeQwen2, ModelTypeLlama)
	case c.VocabSize <= 0 || c.HiddenSize <= 0 || c.IntermediateSize <= 0 || c.NumHiddenLayers <= 0:
		return fmt.Errorf("vocab_size, hidden_size, intermediate_size and num_hidden_layers must be positive (got %d, %d, %d, %d)",
			c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers)
	case c.NumAttentionHeads <= 0 || c.NumKeyValueHeads <= 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0:
		return fmt.Errorf("num_attention_heads %d must be a positive multiple of num_key_value_heads %d", c.NumAttentionHeads, c.NumKeyValueHeads)
	case c.HeadDim == 0 && c.HiddenSize%c.NumAttentionHeads != 0:
		return fmt.Errorf("hidden_size %d is not a multiple of num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	case c.HeadDimension()%2 != 0:
		return fmt.Errorf("head dimension %d must be even for rotary embeddings", c.HeadDimension())
	case c.RopeTheta <= 0:
		return fmt.Errorf("rope_theta must be positive, got %g", c.RopeTheta)
	case c.RMSNormEps <= 0:
		return fmt.Errorf("rms_norm_eps must be positive, got %g", c.RMSNormEps)
	case c.HiddenAct != "silu":
		return fmt.Errorf("hidden_act %q is not supported (want \"silu\")", c.HiddenAct)
	case c.MLPBias:
		return fmt.Errorf("mlp_bias is not supported")
	case c.ModelType == ModelTypeLlama && c.AttentionBias != nil && *c.AttentionBias:
		return fmt.Errorf("attention_bias with an o_proj bias is not supported")
	case len(c.RopeScaling) > 0 && string(c.RopeScaling) != "null":
		return fmt.Errorf("rope_scaling %s is not supported", c.RopeScaling)
	}
	return nil
}

// HeadDimension returns head_dim, or hidden_size/num_attention_heads when
// the config does not set it.
func (c *Config) HeadDimension() int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	return c.HiddenSize / c.NumAttentionHeads
}

// QKVBias reports whether the q, k and v projections have biases: always
// for Qwen2, and for Llama when attention_bias is set.
func (c *Config) QKVBias() bool {
	if c.ModelType == ModelTypeQwen2 {
		return true
	}
	return c.AttentionBias != nil && *c.AttentionBias
}

// TokenIDs decodes a bos_token_id or eos_token_id field: a number, a list
// of numbers, or absent/null (no ids).
func TokenIDs(raw json.RawMessage) ([]int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one int
	if err := json.Unmarshal(raw, &one); err == nil {
		return []int{one}, nil
	}
	var many []int
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, fmt.Errorf("token id %s is neither a number nor a list of numbers", raw)
	}
	return slices.Clone(many), nil
}

func rawInt(v int) json.RawMessage { return json.RawMessage(fmt.Sprint(v)) }

// Qwen25Coder3BConfig returns the configuration of
// Qwen/Qwen2.5-Coder-3B-Instruct (the fields of its published config.json).
func Qwen25Coder3BConfig() *Config {
	sw := 32768
	return &Config{
		Architectures:         []string{"Qwen2ForCausalLM"},
		ModelType:             ModelTypeQwen2,
		VocabSize:             151936,
		HiddenSize:            2048,
		IntermediateSize:      11008,
		NumHiddenLayers:       36,
		NumAttentionHeads:     16,
		NumKeyValueHeads:      2,
		HiddenAct:             "silu",
		MaxPositionEmbeddings: 32768,
		RopeTheta:             1000000.0,
		RMSNormEps:            1e-6,
		TieWordEmbeddings:     true,
		AttentionDropout:      0,
		InitializerRange:      0.02,
		RopeScaling:           json.RawMessage("null"),
		SlidingWindow:         &sw,
		MaxWindowLayers:       70,
		BOSTokenID:            rawInt(151643),
		EOSTokenID:            rawInt(151645),
		TorchDtype:            "bfloat16",
		TransformersVersion:   "4.43.1",
		UseCache:              true,
	}
}

// TinyVocabSize is the padded vocabulary of the Qwen2.5 tokenizer, which
// every generated model keeps so that the real tokenizer works with it.
const TinyVocabSize = 151936

// TinyConfig returns the configuration of the small random model used by
// the CPU tests and the demo (see EnsureTiny).
//
// The vocabulary must stay the real tokenizer's 151,936 entries, and it
// dominates everything: the tied embedding is 151936×hidden parameters and
// the LM head costs about 4·hidden·151936 FLOP per token for the forward
// pass and the gradient with respect to the hidden states, while a whole
// decoder layer at hidden 32 costs about 0.1 MFLOP per token. The pure-Go
// backend reached about 5 GFLOP/s on that matmul on a shared 2-core machine
// (64 tokens × hidden 32 × 151936: 0.22 s; hidden 64: 0.63 s), so hidden 32
// keeps a 64-token training step near half a second and a few hundred steps
// near a minute on a developer machine, where hidden 64 would double it
// and hidden 128 quadruple it. Four heads of dimension 8 (two KV heads, so
// grouped-query attention is exercised), two layers, intermediate size 128
// (the 4× ratio of small Qwen models) and q/k/v biases keep every code path
// of the real architecture. The embedding is 4.9M parameters of 4.9M total.
func TinyConfig() *Config {
	sw := 4096
	return &Config{
		Architectures:         []string{"Qwen2ForCausalLM"},
		ModelType:             ModelTypeQwen2,
		VocabSize:             TinyVocabSize,
		HiddenSize:            32,
		IntermediateSize:      128,
		NumHiddenLayers:       2,
		NumAttentionHeads:     4,
		NumKeyValueHeads:      2,
		HiddenAct:             "silu",
		MaxPositionEmbeddings: 4096,
		RopeTheta:             1000000.0,
		RMSNormEps:            1e-6,
		TieWordEmbeddings:     true,
		InitializerRange:      0.02,
		SlidingWindow:         &sw,
		MaxWindowLayers:       2,
		BOSTokenID:            rawInt(151643),
		EOSTokenID:            rawInt(151645),
		TorchDtype:            "float32",
		UseCache:              true,
	}
}
