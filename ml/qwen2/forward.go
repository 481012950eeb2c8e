package qwen2

import (
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/layers/attention"
	"github.com/gomlx/gomlx/ml/model"
)

// Batch is the input of one forward pass, as graph nodes. All are int32
// [B, S].
type Batch struct {
	// Tokens are the token ids.
	Tokens *G.Node
	// Positions are the rotary positions, restarting at 0 at the start of
	// each packed document. Nil means 0..S-1 in every row.
	Positions *G.Node
	// Segments are document ids: a token attends only to earlier (or the
	// same) tokens of its row with the same segment id. Nil means one
	// document per row (plain causal attention, the cheapest fused path).
	// Padding can be given its own segment id and zero loss weight.
	Segments *G.Node
}

// Training mode (LoRA dropout) follows m.Store.IsTraining(g): a trainer sets
// it with m.Store.SetTraining(g, true) before building the graph, and seeds
// the dropout RNG with m.Store.SetRNGStateFromSeed(seed).

// Hidden builds the decoder up to and including the final RMSNorm and
// returns the hidden states [B, S, HiddenSize] in the compute dtype.
func (m *Model) Hidden(b Batch) *G.Node {
	if err := m.checkLoaded(); err != nil {
		panic(err)
	}
	g := b.Tokens.Graph()
	cfg := m.Config
	batchSize, seqLen := b.Tokens.Shape().Dimensions[0], b.Tokens.Shape().Dimensions[1]
	positions := b.Positions
	if positions == nil {
		positions = G.Iota(g, shapes.Make(dtypes.Int32, batchSize, seqLen), 1)
	}
	cos, sin := m.rotary(positions)
	p := &pass{att: m.trainingAttention(g, b.Segments, batchSize, seqLen), remat: m.Options.GradientCheckpointing, lora: m.lora != nil}
	if m.lora != nil && m.lora.Dropout > 0 && m.Store.IsTraining(g) {
		p.dropout = m.dropoutKey(g)
	}

	x := m.embed(b.Tokens)
	for i := range cfg.NumLayers {
		if m.Options.GradientCheckpointing {
			x = x.Checkpoint()
		}
		x = p.fenceLayer(x)
		x = m.layer(i, x, cos, sin, p, nil)
	}
	if m.Options.GradientCheckpointing {
		x = x.StopCheckpoint()
	}
	return m.rmsNorm(x, m.base["model.norm.weight"].node(g))
}

// Logits builds the full forward pass and returns float32 logits
// [B, S, VocabSize]. For training on long sequences use Loss, which never
// materialises them.
func (m *Model) Logits(b Batch) *G.Node {
	h := m.Hidden(b)
	return m.headLogits(h)
}

// headLogits multiplies hidden states [..., H] by the LM head, float32 out.
func (m *Model) headLogits(h *G.Node) *G.Node {
	w := m.headWeight(h.Graph())
	return G.Dot(h, w).WithOutputDType(dtypes.Float32).General([]int{h.Rank() - 1}, nil, []int{1}, nil)
}

// headWeight is the LM head [V, H] in the compute dtype.
func (m *Model) headWeight(g *G.Graph) *G.Node {
	if m.Config.TieWordEmbeddings {
		return m.base["model.embed_tokens.weight"].node(g)
	}
	return m.base["lm_head.weight"].node(g)
}

// embed looks up token embeddings [B, S, H].
func (m *Model) embed(tokens *G.Node) *G.Node {
	e := m.base["model.embed_tokens.weight"].node(tokens.Graph())
	return G.Gather(e, G.InsertAxes(tokens, -1))
}

// rmsNorm normalises x over its last axis in float32 and scales by w, as
// Hugging Face does: w * (x·rsqrt(mean(x²)+eps)).to(dtype).
func (m *Model) rmsNorm(x, w *G.Node) *G.Node {
	dtype := x.DType()
	xf := G.ConvertDType(x, dtypes.Float32)
	variance := G.ReduceAndKeep(G.Square(xf), G.ReduceMean, -1)
	// Rsqrt has no gradient in GoMLX v0.28.2: divide by Sqrt instead.
	xf = G.Div(xf, G.Sqrt(G.AddScalar(variance, m.Config.RMSNormEps)))
	xn := G.ConvertDType(xf, dtype)
	return G.Mul(xn, leading(G.ConvertDType(w, dtype), xn.Rank()))
}

// rotary returns cos and sin [B, S, 1, HeadDim] in the compute dtype for
// the given positions, as Hugging Face's default rotary embedding computes
// them (float32, then cast).
func (m *Model) rotary(positions *G.Node) (cos, sin *G.Node) {
	g := positions.Graph()
	half := m.Config.HeadDim / 2
	invFreq := make([]float32, half)
	for i := range invFreq {
		invFreq[i] = float32(1 / math.Pow(m.Config.RopeTheta, float64(2*i)/float64(m.Config.HeadDim)))
	}
	pos := G.ConvertDType(positions, dtypes.Float32)
	freqs := G.Mul(G.InsertAxes(pos, -1), G.Reshape(G.Const(g, invFreq), 1, 1, half)) // [B,S,half]
	emb := G.Concatenate([]*G.Node{freqs, freqs}, -1)                                 // [B,S,D]
	emb = G.InsertAxes(emb, 2)                                                        // [B,S,1,D]
	return G.ConvertDType(G.Cos(emb), m.Options.DType), G.ConvertDType(G.Sin(emb), m.Options.DType)
}

// applyRotary rotates x [B, S, heads, D] (rotate-half convention).
func applyRotary(x, cos, sin *G.Node) *G.Node {
	d := x.Shape().Dimensions[3]
	x1 := G.SliceAxis(x, 3, G.AxisRange(0, d/2))
	x2 := G.SliceAxis(x, 3, G.AxisRange(d/2, d))
	rot := G.Concatenate([]*G.Node{G.Neg(x2), x1}, 3)
	return G.Add(G.Mul(x, cos), G.Mul(rot, sin))
}

// pass is what the layers of one forward pass share.
type pass struct {
	att attentionSpec
	// remat is set when the pass is gradient-checkpointed. A layer's frozen
	// weights are then dequantised, and its dropout masks drawn, from
	// nodes tied to the layer's input (anchored), so that GoMLX's
	// rematerialisation recomputes them in the backward pass. Otherwise
	// they depend only on variables and the backward pass would keep every
	// layer's dequantised weights and masks alive from the forward pass:
	// for the 3B model about 5.5 GB of bfloat16 weights and 3 GB of masks.
	remat bool
	// lora is set when the model has LoRA adapters: layers are then fenced
	// (see fenceLayer).
	lora bool
	// dropout is the RNG state that LoRA dropout keys are split from, nil
	// when dropout is off (not training, or rate 0).
	dropout *G.Node
	// fence is the current layer's gradient fence (see fenceLayer).
	fence *gradFence
}

// gradFence holds, during the backward pass, the gradients of one layer's
// LoRA weights.
type gradFence struct{ grads []*G.Node }

// fenceLayer makes the gradient that leaves a layer through its input x
// wait for the gradients of that layer's LoRA weights (a SchedulingBarrier
// in the backward pass; the forward value is x unchanged).
//
// Without it XLA is free to compute every LoRA weight gradient at the end
// of the step, next to the optimiser, and it does: on an H100 it deferred
// them and fused them horizontally across all 36 layers, which kept each
// layer's MLP and attention gradients (3 x bf16[3600,11008] and the
// attention's dq/dk/dv, about 300 MB a layer) alive until the end. With
// the fence a layer's activation gradients die inside its own backward
// step, and XLA's footprint for the 3B int8 step (seq 3600, checkpointed)
// went from 14.26 to 6.57 GiB.
//
// GoMLX differentiates nodes in reverse creation order, so the weights'
// gradient hooks (created later, inside the layer, by loraWeight) have run
// and recorded their gradients by the time this node's hook runs.
func (p *pass) fenceLayer(x *G.Node) *G.Node {
	if p == nil || !p.lora {
		return x
	}
	f := &gradFence{}
	p.fence = f
	return G.IdentityWithCustomGradient(x, func(_, v *G.Node) *G.Node {
		if len(f.grads) == 0 {
			return v
		}
		return G.SchedulingBarrier(v, f.grads...)
	})
}

// loraWeight returns the value of a LoRA weight variable for this pass;
// its gradient is recorded in the current layer's fence.
func (p *pass) loraWeight(g *G.Graph, v *model.Variable) *G.Node {
	n := v.NodeValue(g)
	if p == nil || p.fence == nil {
		return n
	}
	f := p.fence
	return G.IdentityWithCustomGradient(n, func(_, grad *G.Node) *G.Node {
		f.grads = append(f.grads, grad)
		return grad
	})
}

// anchored returns v tied to the layer input x when the pass is
// checkpointed: SchedulingBarrier makes v's value depend on x (an
// identity on v), which marks it and what is computed from it for
// rematerialisation; StopGradient keeps autodiff from following the tie.
func (p *pass) anchored(v, x *G.Node) *G.Node {
	if p == nil || !p.remat {
		return v
	}
	return G.StopGradient(G.SchedulingBarrier(v, x))
}

// dropoutKey splits the Store's RNG state: the state variable advances
// once per graph execution and the returned state seeds this pass's
// dropout masks.
func (m *Model) dropoutKey(g *G.Graph) *G.Node {
	v := m.Store.GetVariable(model.JoinPath("/", model.RNGStateVariableName))
	if v == nil || !v.HasValue() {
		if err := m.Store.ResetRNGState(); err != nil {
			panic(err)
		}
		v = m.Store.GetVariable(model.JoinPath("/", model.RNGStateVariableName))
	}
	next, key := G.RNGStateSplit(v.NodeValue(g))
	v.SetNodeValue(next)
	return key
}

// attentionSpec says how a layer attends.
type attentionSpec struct {
	fused bool
	// For the fused path: an additive [B, H, S, S] bias (nil for plain causal).
	bias *G.Node
	// For the plain path: a boolean mask [B, Sq, Skv] (true = attend).
	mask *G.Node
}

// useFused reports whether the backend has the fused attention kernel and
// the configuration allows it.
func (m *Model) useFused(g *G.Graph) bool {
	if m.Options.Attention == AttentionPlain || !m.Options.DType.IsHalfPrecision() || m.Config.HeadDim%8 != 0 {
		return false
	}
	caps := g.Backend().Capabilities()
	return caps.Operations[compute.OpTypeFusedScaledDotProductAttention] && caps.Operations[compute.OpTypeFusedScaledDotProductAttentionVJP]
}

// trainingAttention builds the mask (plain path) or bias (fused path) for
// a full-sequence forward pass.
func (m *Model) trainingAttention(g *G.Graph, segments *G.Node, batchSize, seqLen int) attentionSpec {
	if m.useFused(g) {
		spec := attentionSpec{fused: true}
		if segments != nil {
			same := G.Equal(G.InsertAxes(segments, -1), G.InsertAxes(segments, 1)) // [B,S,S]
			bias := G.Where(same, G.Scalar(g, m.Options.DType, 0), G.Scalar(g, m.Options.DType, -30000))
			spec.bias = G.BroadcastToDims(G.InsertAxes(bias, 1), batchSize, m.Config.NumHeads, seqLen, seqLen)
		}
		return spec
	}
	causal := G.LowerTriangular(g, seqLen) // [S,S] bool, true where k <= q
	mask := G.BroadcastToDims(G.InsertAxes(causal, 0), batchSize, seqLen, seqLen)
	if segments != nil {
		same := G.Equal(G.InsertAxes(segments, -1), G.InsertAxes(segments, 1))
		mask = G.LogicalAnd(mask, same)
	}
	return attentionSpec{mask: mask}
}

// kvState is one layer's key/value cache during generation.
type kvState struct {
	// k, v are [B, T, KVHeads, D]; the new keys/values are written at
	// positions [start, start+S).
	k, v *G.Node
	// write replaces the cache with the new keys/values written in.
	write func(cache, update *G.Node) *G.Node
}

// layer is one decoder layer. With kv non-nil (generation) the layer
// writes its keys/values into kv and attends over the whole cache.
func (m *Model) layer(i int, x, cos, sin *G.Node, p *pass, kv *kvState) *G.Node {
	g := x.Graph()
	l := layerName(i)
	h := m.rmsNorm(x, m.base[l+".input_layernorm.weight"].node(g))
	h = m.selfAttention(i, h, cos, sin, p, kv)
	x = G.Add(x, h)
	h = m.rmsNorm(x, m.base[l+".post_attention_layernorm.weight"].node(g))
	h = m.mlp(i, h, p)
	return G.Add(x, h)
}

// mlp is SwiGLU: down(silu(gate(x)) * up(x)).
func (m *Model) mlp(i int, x *G.Node, p *pass) *G.Node {
	gate := m.linear(i, ProjGate, x, p)
	up := m.linear(i, ProjUp, x, p)
	act := G.Mul(gate, G.Sigmoid(gate))
	return m.linear(i, ProjDown, G.Mul(act, up), p)
}

// selfAttention is grouped-query attention with rotary embeddings.
func (m *Model) selfAttention(i int, x, cos, sin *G.Node, p *pass, kv *kvState) *G.Node {
	cfg := m.Config
	dims := x.Shape().Dimensions
	bs, s := dims[0], dims[1]
	q := G.Reshape(m.linear(i, ProjQ, x, p), bs, s, cfg.NumHeads, cfg.HeadDim)
	k := G.Reshape(m.linear(i, ProjK, x, p), bs, s, cfg.NumKVHeads, cfg.HeadDim)
	v := G.Reshape(m.linear(i, ProjV, x, p), bs, s, cfg.NumKVHeads, cfg.HeadDim)
	q = applyRotary(q, cos, sin)
	k = applyRotary(k, cos, sin)
	if kv != nil {
		kv.k = kv.write(kv.k, k)
		kv.v = kv.write(kv.v, v)
		k, v = kv.k, kv.v
	}
	scale := 1 / math.Sqrt(float64(cfg.HeadDim))
	att := p.att
	var out *G.Node
	if att.fused {
		out, _ = attention.Core(q, k, v, attention.LayoutBSHD, attention.CoreOptions{
			Scale:         scale,
			UseCausalMask: true,
			AttentionBias: att.bias,
		})
	} else {
		out = plainAttention(q, k, v, att.mask, scale)
	}
	out = G.Reshape(out, bs, s, cfg.NumHeads*cfg.HeadDim)
	return m.linear(i, ProjO, out, p)
}

// plainAttention computes softmax(q·kᵀ·scale masked)·v with float32 scores
// and softmax. q is [B, Sq, H, D], k and v [B, Skv, KVH, D], mask
// [B, Sq, Skv] bool. It returns [B, Sq, H, D] in q's dtype.
func plainAttention(q, k, v, mask *G.Node, scale float64) *G.Node {
	dims := q.Shape().Dimensions
	bs, sq, heads, d := dims[0], dims[1], dims[2], dims[3]
	kvHeads := k.Shape().Dimensions[2]
	group := heads / kvHeads
	q5 := G.Reshape(q, bs, sq, kvHeads, group, d)
	// Scores [b, h, q, g, k] in float32 (Einsum would ignore the output dtype).
	scores := G.Dot(q5, k).WithOutputDType(dtypes.Float32).General([]int{4}, []int{0, 2}, []int{3}, []int{0, 2})
	scores = G.MulScalar(scores, scale)
	m := G.InsertAxes(G.InsertAxes(mask, 1), 3) // [B,1,Sq,1,Skv]
	m = G.BroadcastToShape(m, scores.Shape())
	scores = G.Where(m, scores, G.Infinity(q.Graph(), dtypes.Float32, -1))
	probs := G.ConvertDType(G.Softmax(scores, -1), q.DType())
	out := G.Dot(probs, v).Einsum("bhqgk,bkhd->bqhgd")
	return G.Reshape(out, bs, sq, heads, d)
}

// linear applies projection proj of layer i to x [..., in]: the frozen
// (dequantised) weight, its bias if any, and the LoRA adapter if any.
func (m *Model) linear(i int, proj string, x *G.Node, p *pass) *G.Node {
	g := x.Graph()
	module := projModule(i, proj)
	w := m.base[module+".weight"].anchoredNode(g, p, x) // [out, in]
	y := project(x, w)
	if b := m.base[module+".bias"]; b != nil {
		y = G.Add(y, leading(b.node(g), y.Rank()))
	}
	if pair := m.loraVars[module]; pair != nil {
		y = G.Add(y, m.loraDelta(pair, x, p))
	}
	return y
}

// project multiplies x [..., in] by the frozen weight w [out, in]ᵀ in the
// compute dtype.
//
// GoMLX's Dot asks for a float32 accumulator whenever the operands are
// half precision, and its autodiff then builds the backward matmuls in
// the accumulator's dtype: the activation gradient and the frozen weight
// are converted to float32 and the gradient dx = dy·w runs as a float32
// gemm. In the 3B step on an H100 that was every base matmul of the
// backward pass (a third of the step's FLOPs) plus a float32 copy of each
// dequantised weight. Without the setting the backward matmul is bf16 x
// bf16 -> bf16, as in torch: the backends accumulate half-precision dots
// in float32 anyway (cuBLAS and Triton on the GPU, a float32 output in the
// pure-Go backend), so the forward value is unchanged.
//
// The LoRA matmuls keep the float32 accumulator on purpose: their
// gradients are the trained weights' gradients, computed in float32 as
// peft does.
func project(x, w *G.Node) *G.Node {
	return G.Dot(x, w).WithAccumulatorDType(dtypes.InvalidDType).General([]int{x.Rank() - 1}, nil, []int{1}, nil)
}

// loraDelta is B·A·dropout(x)·scaling in the compute dtype.
// Each call draws its mask from its own key, split off the pass's stream;
// under checkpointing the key is anchored to x, so the backward pass
// draws the same mask again instead of keeping it.
func (m *Model) loraDelta(pair *loraPair, x *G.Node, p *pass) *G.Node {
	g := x.Graph()
	dtype := x.DType()
	if rate := m.lora.Dropout; rate > 0 && p != nil && p.dropout != nil {
		var key *G.Node
		p.dropout, key = G.RNGStateSplit(p.dropout)
		_, u := G.RandomUniform(p.anchored(key, x), shapes.Make(dtype, x.Shape().Dimensions...))
		keep := G.GreaterOrEqual(u, G.Scalar(g, dtype, rate))
		x = G.Where(keep, G.DivScalar(x, 1-rate), G.ZerosLike(x))
	}
	a := G.ConvertDType(p.loraWeight(g, pair.A), dtype) // [r, in]
	b := G.ConvertDType(p.loraWeight(g, pair.B), dtype) // [out, r]
	ax := G.Dot(x, a).General([]int{x.Rank() - 1}, nil, []int{1}, nil)
	bax := G.Dot(ax, b).General([]int{ax.Rank() - 1}, nil, []int{1}, nil)
	return G.MulScalar(bax, m.lora.Scaling())
}

func (m *Model) String() string {
	return fmt.Sprintf("qwen2(hidden=%d layers=%d heads=%d/%d vocab=%d %s quant=%s)", m.Config.HiddenSize,
		m.Config.NumLayers, m.Config.NumHeads, m.Config.NumKVHeads, m.Config.VocabSize, m.Options.DType, m.Options.Quantization)
}

// leading reshapes x to the given rank by adding leading axes of size 1,
// for broadcasting (GoMLX broadcasts only between equal ranks).
func leading(x *G.Node, rank int) *G.Node {
	if x.Rank() >= rank {
		return x
	}
	dims := make([]int, rank)
	for i := range dims {
		dims[i] = 1
	}
	copy(dims[rank-x.Rank():], x.Shape().Dimensions)
	return G.Reshape(x, dims...)
}
