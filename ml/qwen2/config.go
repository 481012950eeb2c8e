package qwen2

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gomlx/compute/dtypes"
)

// Config is the architecture of a Qwen2-family decoder: the fields of a
// Hugging Face config.json that the network depends on.
type Config struct {
	VocabSize        int
	HiddenSize       int
	IntermediateSize int
	NumLayers        int
	NumHeads         int
	NumKVHeads       int
	// HeadDim is HiddenSize/NumHeads unless the checkpoint says otherwise.
	HeadDim    int
	RopeTheta  float64
	RMSNormEps float64
	// TieWordEmbeddings makes the LM head reuse the token embedding.
	TieWordEmbeddings bool
	// AttentionBias is true for Qwen2 (biases on q, k and v) and false for Llama.
	AttentionBias bool
}

// Validate reports the first inconsistency in c.
func (c Config) Validate() error {
	switch {
	case c.VocabSize <= 0 || c.HiddenSize <= 0 || c.IntermediateSize <= 0 || c.NumLayers <= 0:
		return fmt.Errorf("qwen2 config: vocab, hidden, intermediate sizes and layer count must be positive (got %d, %d, %d, %d)",
			c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumLayers)
	case c.NumHeads <= 0 || c.NumKVHeads <= 0 || c.NumHeads%c.NumKVHeads != 0:
		return fmt.Errorf("qwen2 config: %d attention heads is not a multiple of %d key/value heads", c.NumHeads, c.NumKVHeads)
	case c.HeadDim <= 0 || c.HeadDim%2 != 0:
		return fmt.Errorf("qwen2 config: head dimension %d must be positive and even", c.HeadDim)
	case c.RopeTheta <= 0:
		return fmt.Errorf("qwen2 config: rope_theta %g must be positive", c.RopeTheta)
	}
	return nil
}

// Qwen25Coder3B is the architecture of Qwen2.5-Coder-3B(-Instruct).
var Qwen25Coder3B = Config{
	VocabSize: 151936, HiddenSize: 2048, IntermediateSize: 11008, NumLayers: 36,
	NumHeads: 16, NumKVHeads: 2, HeadDim: 128, RopeTheta: 1e6, RMSNormEps: 1e-6,
	TieWordEmbeddings: true, AttentionBias: true,
}

// Quantization is how the frozen base's linear weights are stored on the device.
type Quantization string

// The storage formats of the frozen base (FORMATS.md section 6).
const (
	QuantNone Quantization = "none" // compute dtype (bf16 on the GPU)
	QuantInt8 Quantization = "int8" // symmetric, one scale per output row
	QuantNF4  Quantization = "nf4"  // QLoRA NF4, blocks of 64, double-quantised scales
)

// ParseQuantization parses "none", "int8" or "nf4" ("" means "none").
func ParseQuantization(s string) (Quantization, error) {
	switch q := Quantization(strings.ToLower(s)); q {
	case "", QuantNone:
		return QuantNone, nil
	case QuantInt8, QuantNF4:
		return q, nil
	}
	return "", fmt.Errorf("unknown quantization %q: want \"none\", \"int8\" or \"nf4\"", s)
}

// AttentionImpl selects the attention implementation.
type AttentionImpl int

const (
	// AttentionAuto uses the fused kernel when the backend has one (XLA with
	// CUDA and a half-precision compute dtype), else the plain path.
	AttentionAuto AttentionImpl = iota
	// AttentionPlain always computes attention explicitly (f32 softmax).
	AttentionPlain
)

// Options are the choices that do not come from the checkpoint.
type Options struct {
	// DType is the compute dtype of activations and unquantised weights:
	// dtypes.BFloat16 (the default) or dtypes.Float32 (for exact tests).
	// Reductions, softmax, norms and the loss are computed in f32 either way.
	DType dtypes.DType
	// Quantization of the seven linear projections of every layer.
	Quantization Quantization
	// QuantizeEmbedding also quantises the token embedding / LM head
	// (normally kept in DType).
	QuantizeEmbedding bool
	// GradientCheckpointing recomputes each layer's activations in the
	// backward pass instead of keeping them (less memory, ~15% slower).
	GradientCheckpointing bool
	// Attention selects the attention implementation.
	Attention AttentionImpl
	// LossChunk is the number of vocabulary entries whose logits the loss
	// materialises at a time (default 16384).
	LossChunk int
}

func (o Options) withDefaults() Options {
	if o.DType == dtypes.InvalidDType {
		o.DType = dtypes.BFloat16
	}
	if o.Quantization == "" {
		o.Quantization = QuantNone
	}
	if o.LossChunk <= 0 {
		o.LossChunk = 16384
	}
	return o
}

// The seven projections LoRA can adapt, by their PEFT target-module names.
const (
	ProjQ    = "q_proj"
	ProjK    = "k_proj"
	ProjV    = "v_proj"
	ProjO    = "o_proj"
	ProjGate = "gate_proj"
	ProjUp   = "up_proj"
	ProjDown = "down_proj"
)

// AllProjections lists the seven projections in PEFT's module order.
var AllProjections = []string{ProjQ, ProjK, ProjV, ProjO, ProjGate, ProjUp, ProjDown}

// LoRAConfig configures the adapters (FORMATS.md section 5).
type LoRAConfig struct {
	Rank    int
	Alpha   float64
	Dropout float64
	// Targets are projection names from AllProjections; empty means all seven.
	Targets []string
	// RSLoRA scales by Alpha/sqrt(Rank) instead of Alpha/Rank.
	RSLoRA bool
}

// Scaling is the factor applied to B·A·x.
func (l LoRAConfig) Scaling() float64 {
	if l.RSLoRA {
		return l.Alpha / sqrt(float64(l.Rank))
	}
	return l.Alpha / float64(l.Rank)
}

// TargetSet returns the effective targets in PEFT's module order.
func (l LoRAConfig) TargetSet() []string {
	if len(l.Targets) == 0 {
		return slices.Clone(AllProjections)
	}
	var out []string
	for _, p := range AllProjections {
		if slices.Contains(l.Targets, p) {
			out = append(out, p)
		}
	}
	return out
}

// Validate reports the first problem in l.
func (l LoRAConfig) Validate() error {
	if l.Rank <= 0 {
		return fmt.Errorf("lora rank %d must be positive", l.Rank)
	}
	if l.Dropout < 0 || l.Dropout >= 1 {
		return fmt.Errorf("lora dropout %g must be in [0, 1)", l.Dropout)
	}
	for _, t := range l.Targets {
		if !slices.Contains(AllProjections, t) {
			return fmt.Errorf("unknown lora target %q: want some of %s", t, strings.Join(AllProjections, ", "))
		}
	}
	return nil
}
