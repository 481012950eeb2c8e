package qwen2

import (
	"encoding/json"
	"fmt"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/pipeml/pipe/ml/checkpoint"
	"github.com/pipeml/pipe/ml/safetensors"
)

// The file names of a PEFT adapter folder.
const (
	AdapterConfigFile  = "adapter_config.json"
	AdapterWeightsFile = "adapter_model.safetensors"
)

// peftPrefix is the prefix PEFT gives every key of a causal-LM adapter.
const peftPrefix = "base_model.model."

// AdapterConfig is PEFT's adapter_config.json for a LoRA adapter.
type AdapterConfig struct {
	PeftType            string             `json:"peft_type"`
	TaskType            string             `json:"task_type"`
	BaseModelNameOrPath string             `json:"base_model_name_or_path"`
	R                   int                `json:"r"`
	LoraAlpha           float64            `json:"lora_alpha"`
	LoraDropout         float64            `json:"lora_dropout"`
	Bias                string             `json:"bias"`
	FanInFanOut         bool               `json:"fan_in_fan_out"`
	UseRSLoRA           bool               `json:"use_rslora"`
	UseDoRA             bool               `json:"use_dora"`
	TargetModules       []string           `json:"target_modules"`
	InferenceMode       bool               `json:"inference_mode"`
	InitLoraWeights     bool               `json:"init_lora_weights"`
	ModulesToSave       []string           `json:"modules_to_save"`
	LayersToTransform   []int              `json:"layers_to_transform"`
	RankPattern         map[string]int     `json:"rank_pattern"`
	AlphaPattern        map[string]float64 `json:"alpha_pattern"`
	Revision            *string            `json:"revision"`
}

// peftKey is the safetensors key of module's lora_A or lora_B weight.
func peftKey(module, which string) string {
	return peftPrefix + module + "." + which + ".weight"
}

// ExportAdapter writes the adapter in PEFT's format into dir (created if
// needed): adapter_config.json and adapter_model.safetensors (float32,
// metadata {"format":"pt"}). baseModel is recorded as
// base_model_name_or_path.
func (m *Model) ExportAdapter(dir, baseModel string) error {
	if m.lora == nil {
		return fmt.Errorf("qwen2: model has no LoRA adapter to export")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ac := AdapterConfig{
		PeftType: "LORA", TaskType: "CAUSAL_LM", BaseModelNameOrPath: baseModel,
		R: m.lora.Rank, LoraAlpha: m.lora.Alpha, LoraDropout: m.lora.Dropout, Bias: "none",
		UseRSLoRA: m.lora.RSLoRA, TargetModules: slices.Clone(m.lora.Targets), InferenceMode: true,
		InitLoraWeights: true, RankPattern: map[string]int{}, AlphaPattern: map[string]float64{},
	}
	data, err := json.MarshalIndent(ac, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, AdapterConfigFile), append(data, '\n'), 0o644); err != nil {
		return err
	}
	var entries []safetensors.Entry
	for i := range m.Config.NumLayers {
		for _, p := range m.lora.Targets {
			module := projModule(i, p)
			pair := m.loraVars[module]
			for _, x := range []struct {
				which string
				v     *tensors.Tensor
			}{{"lora_A", pair.A.MustValue()}, {"lora_B", pair.B.MustValue()}} {
				vals := tensors.MustCopyFlatData[float32](x.v)
				entries = append(entries, safetensors.Entry{
					Name: peftKey(module, x.which), DType: safetensors.F32,
					Shape: x.v.Shape().Dimensions, Data: safetensors.Float32Bytes(vals),
				})
			}
		}
	}
	return safetensors.Write(filepath.Join(dir, AdapterWeightsFile), entries, map[string]string{"format": "pt"})
}

// ReadAdapterConfig reads and checks a PEFT adapter_config.json.
func ReadAdapterConfig(dir string) (*AdapterConfig, LoRAConfig, error) {
	path := filepath.Join(dir, AdapterConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, LoRAConfig{}, err
	}
	var ac AdapterConfig
	if err := json.Unmarshal(data, &ac); err != nil {
		return nil, LoRAConfig{}, fmt.Errorf("%s: %v", path, err)
	}
	switch {
	case ac.PeftType != "LORA":
		return nil, LoRAConfig{}, fmt.Errorf("%s: peft_type %q is not LORA", path, ac.PeftType)
	case ac.UseDoRA:
		return nil, LoRAConfig{}, fmt.Errorf("%s: DoRA adapters are not supported", path)
	case ac.FanInFanOut:
		return nil, LoRAConfig{}, fmt.Errorf("%s: fan_in_fan_out adapters are not supported", path)
	case ac.Bias != "" && ac.Bias != "none":
		return nil, LoRAConfig{}, fmt.Errorf("%s: bias %q is not supported (only \"none\")", path, ac.Bias)
	case len(ac.RankPattern) > 0 || len(ac.AlphaPattern) > 0:
		return nil, LoRAConfig{}, fmt.Errorf("%s: rank_pattern/alpha_pattern are not supported", path)
	case len(ac.ModulesToSave) > 0:
		return nil, LoRAConfig{}, fmt.Errorf("%s: modules_to_save is not supported", path)
	}
	lc := LoRAConfig{Rank: ac.R, Alpha: ac.LoraAlpha, Dropout: ac.LoraDropout, RSLoRA: ac.UseRSLoRA}
	for _, t := range ac.TargetModules {
		if !slices.Contains(AllProjections, t) {
			return nil, LoRAConfig{}, fmt.Errorf("%s: target module %q is not one of %s", path, t, strings.Join(AllProjections, ", "))
		}
		lc.Targets = append(lc.Targets, t)
	}
	if len(lc.Targets) == 0 {
		return nil, LoRAConfig{}, fmt.Errorf("%s: target_modules is empty", path)
	}
	if ac.LayersToTransform != nil {
		return nil, LoRAConfig{}, fmt.Errorf("%s: layers_to_transform is not supported", path)
	}
	return &ac, lc, lc.Validate()
}

// ImportAdapter loads a PEFT LoRA adapter folder. A model without an
// adapter gets one with the folder's configuration; a model with one must
// have the same rank and targets, and its weights are overwritten.
func (m *Model) ImportAdapter(dir string) error {
	_, lc, err := ReadAdapterConfig(dir)
	if err != nil {
		return err
	}
	lc.Targets = lc.TargetSet()
	if m.lora != nil && (m.lora.Rank != lc.Rank || !slices.Equal(m.lora.Targets, lc.Targets)) {
		return fmt.Errorf("%s: adapter (rank %d on %v) does not match the model's (rank %d on %v)",
			dir, lc.Rank, lc.Targets, m.lora.Rank, m.lora.Targets)
	}
	path := filepath.Join(dir, AdapterWeightsFile)
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	want := map[string]bool{}
	for i := range m.Config.NumLayers {
		for _, p := range lc.Targets {
			module := projModule(i, p)
			out, in := m.Config.projShape(p)
			var vals [2][]float32
			for j, x := range []struct {
				which string
				shape []int
			}{{"lora_A", []int{lc.Rank, in}}, {"lora_B", []int{out, lc.Rank}}} {
				key := peftKey(module, x.which)
				want[key] = true
				t, ok := f.Tensor(key)
				if !ok {
					return fmt.Errorf("%s: missing tensor %s", path, key)
				}
				if !equalInts(t.Shape, x.shape) {
					return fmt.Errorf("%s: tensor %s has shape %v, want %v", path, key, t.Shape, x.shape)
				}
				if vals[j], err = t.Float32(); err != nil {
					return fmt.Errorf("%s: %s: %v", path, key, err)
				}
			}
			if err := m.setLoRA(module, vals[0], vals[1], lc.Rank, in, out); err != nil {
				return err
			}
		}
	}
	for _, name := range f.Names() {
		if !want[name] {
			return fmt.Errorf("%s: unexpected tensor %s (only lora_A/lora_B of %v are supported)", path, name, lc.Targets)
		}
	}
	m.lora = &lc
	return nil
}

// mergeInto adds the adapter's scaling·B·A of module to its base weight w
// [out, in] (float32, in place; accumulation in float64).
func (m *Model) mergeInto(module string, w []float32, out, in int) {
	pair := m.loraVars[module]
	if pair == nil {
		return
	}
	r := m.lora.Rank
	a := tensors.MustCopyFlatData[float32](pair.A.MustValue()) // [r, in]
	b := tensors.MustCopyFlatData[float32](pair.B.MustValue()) // [out, r]
	s := m.lora.Scaling()
	row := make([]float64, in)
	for o := range out {
		clear(row)
		for k := range r {
			bk := float64(b[o*r+k])
			if bk == 0 {
				continue
			}
			ak := a[k*in : (k+1)*in]
			for j := range in {
				row[j] += bk * float64(ak[j])
			}
		}
		for j := range in {
			w[o*in+j] = float32(float64(w[o*in+j]) + s*row[j])
		}
	}
}

// WriteMerged writes a full Hugging Face checkpoint into dst: the base
// checkpoint in folder base with the adapter merged into its projection
// weights (W + scaling·B·A, computed in float32), config.json and the
// tokenizer files copied, weights stored as dtype (BF16 or F32; "" keeps
// each tensor's dtype). The result loads with transformers alone. Tensors
// are produced one at a time; shards are limited to maxShardBytes (<= 0:
// one file).
func (m *Model) WriteMerged(dst, base string, dtype safetensors.DType, maxShardBytes int64) error {
	if m.lora == nil {
		return fmt.Errorf("qwen2: model has no LoRA adapter to merge")
	}
	ck, err := checkpoint.Open(base)
	if err != nil {
		return err
	}
	defer ck.Close()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	var entries []safetensors.Entry
	for _, name := range ck.Weights.Names() {
		t, _ := ck.Weights.Tensor(name)
		dt := dtype
		if dt == "" {
			dt = t.DType
		}
		if dt != safetensors.F32 && dt != safetensors.BF16 {
			return fmt.Errorf("qwen2: cannot write merged weights as %s", dt)
		}
		shape := slices.Clone(t.Shape)
		entries = append(entries, safetensors.Entry{Name: name, DType: dt, Shape: shape, Fill: func(w io.Writer) error {
			vals, err := t.Float32()
			if err != nil {
				return err
			}
			if module, ok := strings.CutSuffix(name, ".weight"); ok && len(shape) == 2 {
				if _, isLoRA := m.loraVars[module]; isLoRA {
					merged := slices.Clone(vals)
					m.mergeInto(module, merged, shape[0], shape[1])
					vals = merged
				}
			}
			var data []byte
			if dt == safetensors.F32 {
				data = safetensors.Float32Bytes(vals)
			} else {
				data = safetensors.BFloat16Bytes(toBF16(vals))
			}
			_, err = w.Write(data)
			return err
		}})
	}
	if _, err := safetensors.WriteDir(dst, entries, map[string]string{"format": "pt"}, maxShardBytes); err != nil {
		return err
	}
	cfg := *ck.Config
	if dtype == safetensors.BF16 {
		cfg.TorchDtype = "bfloat16"
	} else if dtype == safetensors.F32 {
		cfg.TorchDtype = "float32"
	}
	if err := checkpoint.WriteConfig(filepath.Join(dst, checkpoint.ConfigFile), &cfg); err != nil {
		return err
	}
	if ck.HasTokenizer() {
		if _, err := checkpoint.CopyTokenizer(base, dst); err != nil {
			return err
		}
	}
	return nil
}

func toBF16(v []float32) []bfloat16.BFloat16 {
	out := make([]bfloat16.BFloat16, len(v))
	for i, x := range v {
		out[i] = bfloat16.FromFloat32(x)
	}
	return out
}
