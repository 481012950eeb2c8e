package qwen2

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// GenerateOptions configures decoding.
type GenerateOptions struct {
	// MaxNewTokens bounds the number of generated tokens.
	MaxNewTokens int
	// Temperature 0 means greedy decoding; otherwise logits are divided by
	// it and a token is sampled (after TopK and TopP filtering).
	Temperature float64
	// TopK keeps the K most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP (0 or 1: all).
	TopP float64
	// Seed seeds the sampler; the same seed gives the same tokens.
	Seed uint64
	// StopTokens end generation; the stop token is included in the output.
	StopTokens []int32
	// NoCache recomputes the whole sequence at every step instead of using
	// the KV cache (slow; for tests).
	NoCache bool
}

// bucketLen is the padded length of prompts and KV caches: the smallest
// of 64, 96, 128, 192, 256, 384, ... (two sizes an octave) that holds n.
// Each distinct length is a compiled program (tens of seconds for a 3B
// model on a GPU), so lengths grow geometrically: an evaluation over
// prompts of up to 4,000 tokens compiles at most 14 prefill programs,
// padding a prompt by at most half its length.
func bucketLen(n int) int {
	for b := 64; ; b *= 2 {
		if n <= b {
			return b
		}
		if n <= b*3/2 {
			return b * 3 / 2
		}
	}
}

// Generator decodes with a Model on one backend. It caches the compiled
// graphs (one per prompt bucket and cache size). Not safe for concurrent use.
type Generator struct {
	m       *Model
	backend compute.Backend
	prefill map[[2]int]*model.Exec // by [prompt bucket, cache size]
	step    map[int]*model.Exec    // by cache size
	full    map[int]*model.Exec    // no-cache forward, by bucket
}

// NewGenerator returns a Generator for m on backend.
func (m *Model) NewGenerator(backend compute.Backend) *Generator {
	return &Generator{m: m, backend: backend, prefill: map[[2]int]*model.Exec{}, step: map[int]*model.Exec{}, full: map[int]*model.Exec{}}
}

// Generate continues prompt and returns the new tokens (batch size 1).
func (gen *Generator) Generate(prompt []int32, opts GenerateOptions) ([]int32, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("qwen2: empty prompt")
	}
	if opts.MaxNewTokens <= 0 {
		return nil, nil
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x5eed))
	var out []int32
	if opts.NoCache {
		seq := slices.Clone(prompt)
		for range opts.MaxNewTokens {
			logits, err := gen.fullLast(seq)
			if err != nil {
				return out, err
			}
			tok := pick(logits, opts, rng)
			out = append(out, tok)
			seq = append(seq, tok)
			if slices.Contains(opts.StopTokens, tok) {
				break
			}
		}
		return out, nil
	}
	capacity := bucketLen(len(prompt) + opts.MaxNewTokens)
	logits, caches, err := gen.runPrefill(prompt, capacity)
	if err != nil {
		return nil, err
	}
	pos := len(prompt)
	for {
		tok := pick(logits, opts, rng)
		out = append(out, tok)
		if len(out) == opts.MaxNewTokens || slices.Contains(opts.StopTokens, tok) {
			return out, nil
		}
		logits, caches, err = gen.runStep(tok, pos, caches, capacity)
		if err != nil {
			return out, err
		}
		pos++
	}
}

// fullLast runs the whole (padded) sequence and returns the logits after
// its last real token.
func (gen *Generator) fullLast(seq []int32) ([]float32, error) {
	n := bucketLen(len(seq))
	e := gen.full[n]
	if e == nil {
		var err error
		e, err = model.NewExec(gen.backend, gen.m.Store, func(_ *model.Scope, tokens, last *G.Node) *G.Node {
			h := gen.m.Hidden(Batch{Tokens: tokens})
			return gen.m.lastLogits(h, last)
		})
		if err != nil {
			return nil, err
		}
		gen.full[n] = e
	}
	padded := make([]int32, n)
	copy(padded, seq)
	res, err := e.Exec(tensors.FromFlatDataAndDimensions(padded, 1, n), int32(len(seq)-1))
	if err != nil {
		return nil, err
	}
	return tensors.MustCopyFlatData[float32](res[0]), nil
}

// lastLogits returns the float32 logits [V] of row 0 at index last.
func (m *Model) lastLogits(h, last *G.Node) *G.Node {
	row := G.Gather(G.Reshape(h, h.Shape().Dimensions[1], h.Shape().Dimensions[2]), G.Reshape(last, 1)) // [H]
	return m.headLogits(row)
}

// runPrefill fills the cache with the prompt and returns the logits after it.
func (gen *Generator) runPrefill(prompt []int32, capacity int) ([]float32, []*tensors.Tensor, error) {
	m := gen.m
	n := bucketLen(len(prompt))
	key := [2]int{n, capacity}
	e := gen.prefill[key]
	if e == nil {
		var err error
		e, err = model.NewExec(gen.backend, m.Store, func(_ *model.Scope, inputs []*G.Node) []*G.Node {
			tokens, last := inputs[0], inputs[1]
			g := tokens.Graph()
			positions := G.Iota(g, shapes.Make(dtypes.Int32, 1, n), 1)
			cos, sin := m.rotary(positions)
			p := &pass{att: attentionSpec{mask: G.InsertAxes(G.LowerTriangular(g, n), 0)}}
			x := m.embed(tokens)
			outs := []*G.Node{nil}
			for i := range m.Config.NumLayers {
				kv := &kvState{write: func(_, update *G.Node) *G.Node { return update }}
				x = m.layer(i, x, cos, sin, p, kv)
				pad := []compute.PadAxis{{}, {End: capacity - n}, {}, {}}
				zero := G.Scalar(g, kv.k.DType(), 0)
				outs = append(outs, G.Pad(kv.k, zero, pad...), G.Pad(kv.v, zero, pad...))
			}
			h := m.rmsNorm(x, m.base["model.norm.weight"].node(g))
			outs[0] = m.lastLogits(h, last)
			return outs
		})
		if err != nil {
			return nil, nil, err
		}
		gen.prefill[key] = e
	}
	padded := make([]int32, n)
	copy(padded, prompt)
	res, err := e.Exec(tensors.FromFlatDataAndDimensions(padded, 1, n), int32(len(prompt)-1))
	if err != nil {
		return nil, nil, err
	}
	return tensors.MustCopyFlatData[float32](res[0]), res[1:], nil
}

// runStep feeds one token at position pos and returns the next logits and
// the updated caches.
func (gen *Generator) runStep(tok int32, pos int, caches []*tensors.Tensor, capacity int) ([]float32, []*tensors.Tensor, error) {
	m := gen.m
	e := gen.step[capacity]
	if e == nil {
		var err error
		e, err = model.NewExec(gen.backend, m.Store, func(_ *model.Scope, inputs []*G.Node) []*G.Node {
			token, position := inputs[0], inputs[1] // [1,1], scalar
			g := token.Graph()
			cos, sin := m.rotary(G.Reshape(position, 1, 1))
			slots := G.Iota(g, shapes.Make(dtypes.Int32, 1, 1, capacity), 2)
			p := &pass{att: attentionSpec{mask: G.LessOrEqual(slots, position)}} // [1,1,T]
			here := G.Reshape(G.Equal(G.Iota(g, shapes.Make(dtypes.Int32, capacity), 0), position), 1, capacity, 1, 1)
			x := m.embed(token)
			outs := []*G.Node{nil}
			for i := range m.Config.NumLayers {
				kv := &kvState{
					k: inputs[2+2*i], v: inputs[3+2*i],
					write: func(cache, update *G.Node) *G.Node {
						return G.Where(G.BroadcastToShape(here, cache.Shape()), G.BroadcastToShape(update, cache.Shape()), cache)
					},
				}
				x = m.layer(i, x, cos, sin, p, kv)
				outs = append(outs, kv.k, kv.v)
			}
			h := m.rmsNorm(x, m.base["model.norm.weight"].node(g))
			outs[0] = m.headLogits(G.Reshape(h, h.Shape().Dimensions[2]))
			return outs
		})
		if err != nil {
			return nil, nil, err
		}
		gen.step[capacity] = e
	}
	args := []any{tensors.FromFlatDataAndDimensions([]int32{tok}, 1, 1), int32(pos)}
	for _, c := range caches {
		args = append(args, c)
	}
	res, err := e.Exec(args...)
	if err != nil {
		return nil, nil, err
	}
	return tensors.MustCopyFlatData[float32](res[0]), res[1:], nil
}

// pick chooses the next token from logits: argmax when greedy (the lowest
// id among ties), else a sample after temperature, top-k and top-p.
func pick(logits []float32, opts GenerateOptions, rng *rand.Rand) int32 {
	if opts.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return int32(best)
	}
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	if opts.TopK > 0 && opts.TopK < len(idx) {
		idx = idx[:opts.TopK]
	}
	maxL := float64(logits[idx[0]])
	probs := make([]float64, len(idx))
	var sum float64
	for i, id := range idx {
		probs[i] = math.Exp((float64(logits[id]) - maxL) / opts.Temperature)
		sum += probs[i]
	}
	for i := range probs {
		probs[i] /= sum
	}
	if opts.TopP > 0 && opts.TopP < 1 {
		var acc float64
		for i, p := range probs {
			acc += p
			if acc >= opts.TopP {
				idx, probs = idx[:i+1], probs[:i+1]
				break
			}
		}
		sum = 0
		for _, p := range probs {
			sum += p
		}
		for i := range probs {
			probs[i] /= sum
		}
	}
	u := rng.Float64()
	for i, p := range probs {
		u -= p
		if u < 0 {
			return int32(idx[i])
		}
	}
	return int32(idx[len(idx)-1])
}
