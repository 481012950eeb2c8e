package qwen2

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/pipeml/pipe/ml/quant"
	"golang.org/x/sync/errgroup"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func sqrt(x float64) float64 { return math.Sqrt(x) }

// WeightSource yields a checkpoint's tensors by their Hugging Face names
// (e.g. "model.layers.0.self_attn.q_proj.weight"), one at a time, so that a
// caller never holds two copies of the whole model.
type WeightSource interface {
	// Has reports whether the checkpoint has the tensor.
	Has(name string) bool
	// Float32 returns the tensor's shape and its values converted to float32.
	Float32(name string) (shape []int, values []float32, err error)
}

// Model is a Qwen2 decoder whose variables live in Store:
//
//   - the frozen base under /base, one non-trainable variable per
//     Hugging Face tensor (or a set of them when quantised);
//   - the LoRA adapters under /lora, trainable float32 variables lora_A
//     [r, in] and lora_B [out, r], PEFT's shapes.
//
// A Model is built once and then used to build any number of graphs (one
// per input shape); it is not safe for concurrent mutation (LoadBase,
// AddLoRA, ImportAdapter) while graphs are being built or executed.
type Model struct {
	Config  Config
	Options Options
	// Store holds every variable. Optimisers find the trainable ones with
	// Store's iterators or Model.TrainableVariables.
	Store *model.Store

	base      map[string]*frozenTensor // by HF name
	baseBytes int64
	lora      *LoRAConfig
	// loraVars maps the HF module name ("model.layers.3.self_attn.q_proj")
	// to its adapter variables.
	loraVars map[string]*loraPair
}

// loraPair is one projection's adapter.
type loraPair struct {
	A, B *model.Variable
}

// New returns a Model with no weights yet.
func New(cfg Config, opts Options) (*Model, error) {
	if cfg.HeadDim == 0 && cfg.NumHeads > 0 {
		cfg.HeadDim = cfg.HiddenSize / cfg.NumHeads
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if opts.DType != dtypes.BFloat16 && opts.DType != dtypes.Float32 && opts.DType != dtypes.Float16 {
		return nil, fmt.Errorf("qwen2: compute dtype %s not supported (want bfloat16, float16 or float32)", opts.DType)
	}
	if _, err := ParseQuantization(string(opts.Quantization)); err != nil {
		return nil, err
	}
	return &Model{
		Config:   cfg,
		Options:  opts,
		Store:    model.NewStore(),
		base:     map[string]*frozenTensor{},
		loraVars: map[string]*loraPair{},
	}, nil
}

// layerName is the HF prefix of layer i.
func layerName(i int) string { return fmt.Sprintf("model.layers.%d", i) }

// projModule is the HF module name of projection proj in layer i.
func projModule(i int, proj string) string {
	switch proj {
	case ProjQ, ProjK, ProjV, ProjO:
		return fmt.Sprintf("%s.self_attn.%s", layerName(i), proj)
	default:
		return fmt.Sprintf("%s.mlp.%s", layerName(i), proj)
	}
}

// projShape returns [out, in] of projection proj.
func (c Config) projShape(proj string) (out, in int) {
	q, kv := c.NumHeads*c.HeadDim, c.NumKVHeads*c.HeadDim
	switch proj {
	case ProjQ:
		return q, c.HiddenSize
	case ProjK, ProjV:
		return kv, c.HiddenSize
	case ProjO:
		return c.HiddenSize, q
	case ProjGate, ProjUp:
		return c.IntermediateSize, c.HiddenSize
	case ProjDown:
		return c.HiddenSize, c.IntermediateSize
	}
	panic("unknown projection " + proj)
}

// TensorSpec is one tensor of the base checkpoint.
type TensorSpec struct {
	Name  string
	Shape []int
	// Linear marks the seven projection weights, the ones that are quantised.
	Linear bool
}

// BaseTensors lists every tensor of a Hugging Face checkpoint of this
// architecture, in a fixed order.
func (c Config) BaseTensors() []TensorSpec {
	specs := []TensorSpec{{Name: "model.embed_tokens.weight", Shape: []int{c.VocabSize, c.HiddenSize}}}
	for i := range c.NumLayers {
		l := layerName(i)
		specs = append(specs, TensorSpec{Name: l + ".input_layernorm.weight", Shape: []int{c.HiddenSize}})
		for _, p := range AllProjections {
			out, in := c.projShape(p)
			specs = append(specs, TensorSpec{Name: projModule(i, p) + ".weight", Shape: []int{out, in}, Linear: true})
			if c.AttentionBias && (p == ProjQ || p == ProjK || p == ProjV) {
				specs = append(specs, TensorSpec{Name: projModule(i, p) + ".bias", Shape: []int{out}})
			}
		}
		specs = append(specs, TensorSpec{Name: l + ".post_attention_layernorm.weight", Shape: []int{c.HiddenSize}})
	}
	specs = append(specs, TensorSpec{Name: "model.norm.weight", Shape: []int{c.HiddenSize}})
	if !c.TieWordEmbeddings {
		specs = append(specs, TensorSpec{Name: "lm_head.weight", Shape: []int{c.VocabSize, c.HiddenSize}})
	}
	return specs
}

// LoadBase reads every base tensor from src, converts it to the compute
// dtype or quantises it, and stores it as a frozen variable. Tensors are
// read and prepared by parallelism goroutines (0: GOMAXPROCS); src must be
// safe for concurrent reads.
func (m *Model) LoadBase(src WeightSource, parallelism int) error {
	if parallelism <= 0 {
		parallelism = runtime.GOMAXPROCS(0)
	}
	specs := m.Config.BaseTensors()
	var eg errgroup.Group
	eg.SetLimit(parallelism)
	var mu sync.Mutex
	for _, spec := range specs {
		eg.Go(func() error {
			var shape []int
			var values []float32
			pre := m.preQuantized(src, spec)
			if pre == nil {
				var err error
				if shape, values, err = src.Float32(spec.Name); err != nil {
					return fmt.Errorf("loading %s: %w", spec.Name, err)
				}
			} else {
				shape = spec.Shape
			}
			ht, err := m.prepare(spec, shape, values, pre)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			return m.register(ht)
		})
	}
	return eg.Wait()
}

// QuantizedSource is a WeightSource that also holds some tensors already
// quantised (package quant's cached file), so loading skips quantising them.
type QuantizedSource interface {
	WeightSource
	// Quantized returns the pre-quantised tensor, or nil.
	Quantized(name string) *quant.Weight
}

// WithQuantized wraps src with pre-quantised weights (as quant.ReadFile
// returns them); tensors not among them are read from src.
func WithQuantized(src WeightSource, weights []*quant.Weight) QuantizedSource {
	byName := make(map[string]*quant.Weight, len(weights))
	for _, w := range weights {
		byName[w.Name] = w
	}
	return quantizedSource{src, byName}
}

type quantizedSource struct {
	WeightSource
	byName map[string]*quant.Weight
}

func (q quantizedSource) Quantized(name string) *quant.Weight { return q.byName[name] }

// preQuantized returns src's pre-quantised form of spec when it matches the
// model's quantisation.
func (m *Model) preQuantized(src WeightSource, spec TensorSpec) *quant.Weight {
	qs, ok := src.(QuantizedSource)
	if !ok || m.Options.Quantization == QuantNone {
		return nil
	}
	w := qs.Quantized(spec.Name)
	if w == nil || w.Scheme() != quant.Scheme(m.Options.Quantization) {
		return nil
	}
	return w
}

// SetBaseTensor stores one base tensor given in float32, quantising the
// linear projections (and, if configured, the embedding) as configured.
func (m *Model) SetBaseTensor(name string, shape []int, values []float32) error {
	for _, spec := range m.Config.BaseTensors() {
		if spec.Name == name {
			ht, err := m.prepare(spec, shape, values, nil)
			if err != nil {
				return err
			}
			return m.register(ht)
		}
	}
	return fmt.Errorf("qwen2: unexpected base tensor %q", name)
}

// prepare converts or quantises one tensor on the host.
func (m *Model) prepare(spec TensorSpec, shape []int, values []float32, pre *quant.Weight) (*hostTensor, error) {
	if !equalInts(shape, spec.Shape) {
		return nil, fmt.Errorf("qwen2: tensor %s has shape %v, the config wants %v", spec.Name, shape, spec.Shape)
	}
	q := QuantNone
	if spec.Linear || (m.Options.QuantizeEmbedding && (spec.Name == "model.embed_tokens.weight" || spec.Name == "lm_head.weight")) {
		q = m.Options.Quantization
	}
	// Norm weights stay float32 (the norms run in float32); biases and
	// matrices use the compute dtype.
	dtype := m.Options.DType
	if len(shape) == 1 && !isBias(spec.Name) {
		dtype = dtypes.Float32
	}
	if q == QuantNone {
		pre = nil
	}
	ht, err := prepareFrozen(spec.Name, shape, values, q, dtype, pre)
	if err != nil {
		return nil, fmt.Errorf("qwen2: %s: %w", spec.Name, err)
	}
	return ht, nil
}

// register turns a prepared tensor into variables (not concurrency-safe).
func (m *Model) register(ht *hostTensor) error {
	if old := m.base[ht.ft.name]; old != nil {
		for i, v := range old.vars {
			if err := v.SetValue(ht.values[i]); err != nil {
				return err
			}
		}
		return nil
	}
	ft, err := ht.register(m.Store)
	if err != nil {
		return err
	}
	m.base[ft.name] = ft
	m.baseBytes += ht.devSize
	return nil
}

// BaseBytes returns the size of the frozen base as stored on the device.
func (m *Model) BaseBytes() int64 { return m.baseBytes }

func isBias(name string) bool { return len(name) > 5 && name[len(name)-5:] == ".bias" }

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkLoaded reports the first missing base tensor.
func (m *Model) checkLoaded() error {
	for _, s := range m.Config.BaseTensors() {
		if m.base[s.Name] == nil {
			return fmt.Errorf("qwen2: base tensor %s not loaded", s.Name)
		}
	}
	return nil
}

// LoRA returns the adapter configuration, or nil when the model has none.
func (m *Model) LoRA() *LoRAConfig { return m.lora }

// AddLoRA creates adapters on the configured projections of every layer
// with PEFT's initialisation: A Kaiming-uniform with a=sqrt(5) (uniform in
// ±1/sqrt(in)) from a generator seeded with seed, B zero.
func (m *Model) AddLoRA(cfg LoRAConfig, seed uint64) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if m.lora != nil {
		return fmt.Errorf("qwen2: model already has a LoRA adapter")
	}
	c := cfg
	c.Targets = cfg.TargetSet()
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for i := range m.Config.NumLayers {
		for _, p := range c.Targets {
			out, in := m.Config.projShape(p)
			a := make([]float32, c.Rank*in)
			bound := 1 / math.Sqrt(float64(in))
			for j := range a {
				a[j] = float32((rng.Float64()*2 - 1) * bound)
			}
			b := make([]float32, out*c.Rank)
			if err := m.setLoRA(projModule(i, p), a, b, c.Rank, in, out); err != nil {
				return err
			}
		}
	}
	m.lora = &c
	return nil
}

// setLoRA creates or overwrites the adapter variables of one module.
func (m *Model) setLoRA(module string, a, b []float32, r, in, out int) error {
	scope := m.Store.Scope("/lora/" + dotsToSlashes(module))
	ta := tensors.FromFlatDataAndDimensions(a, r, in)
	tb := tensors.FromFlatDataAndDimensions(b, out, r)
	if pair := m.loraVars[module]; pair != nil {
		if err := pair.A.SetValue(ta); err != nil {
			return err
		}
		return pair.B.SetValue(tb)
	}
	va, err := scope.CreateVariable("lora_A", ta)
	if err != nil {
		return err
	}
	vb, err := scope.CreateVariable("lora_B", tb)
	if err != nil {
		return err
	}
	va.SetTrainable(true)
	vb.SetTrainable(true)
	m.loraVars[module] = &loraPair{A: va, B: vb}
	return nil
}

// TrainableVariables returns the adapter variables (lora_A then lora_B of
// each adapted module, layer by layer in PEFT's module order): the only
// trainable variables of the Model.
func (m *Model) TrainableVariables() []*model.Variable {
	if m.lora == nil {
		return nil
	}
	var vars []*model.Variable
	for i := range m.Config.NumLayers {
		for _, p := range m.lora.Targets {
			pair := m.loraVars[projModule(i, p)]
			vars = append(vars, pair.A, pair.B)
		}
	}
	return vars
}

func dotsToSlashes(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '.' {
			b[i] = '/'
		}
	}
	return string(b)
}

// float32sToTensor converts values to a tensor of the given dtype.
func float32sToTensor(values []float32, dtype dtypes.DType, dims ...int) (*tensors.Tensor, error) {
	switch dtype {
	case dtypes.Float32:
		return tensors.FromFlatDataAndDimensions(values, dims...), nil
	case dtypes.BFloat16:
		bf := make([]bfloat16.BFloat16, len(values))
		for i, v := range values {
			bf[i] = bfloat16.FromFloat32(v)
		}
		return tensors.FromFlatDataAndDimensions(bf, dims...), nil
	}
	t := tensors.FromShape(shapes.Make(dtype, dims...))
	return t, fmt.Errorf("dtype %s not supported for weights", dtype)
}
