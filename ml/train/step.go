package train

import (
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// Optimizer configures AdamW (PyTorch's torch.optim.AdamW update, as the
// Hugging Face Trainer uses it) and gradient clipping.
type Optimizer struct {
	Beta1, Beta2, Epsilon float64
	WeightDecay           float64
	// MaxGradNorm clips the gradient to this global L2 norm; 0 turns
	// clipping off.
	MaxGradNorm float64
}

// DefaultOptimizer is Hugging Face's TrainingArguments default.
var DefaultOptimizer = Optimizer{Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-8, WeightDecay: 0, MaxGradNorm: 1}

// trainer owns the compiled programs and the loop's variables in the
// model's Store: for each trainable variable a gradient accumulator and
// AdamW's two moments, plus the accumulated loss and token count.
type trainer struct {
	backend compute.Backend
	m       *Model
	opt     Optimizer
	dp      *dataParallel

	acc, m1, m2 []*model.Variable
	accLoss     *model.Variable
	accTokens   *model.Variable

	accumulate, apply, step, eval *model.Exec
}

const stateScope = "/train"

func newTrainer(backend compute.Backend, m *Model, opt Optimizer) (*trainer, error) {
	return newParallelTrainer(backend, m, opt, &dataParallel{n: 1})
}

// newParallelTrainer is newTrainer with the step's micro-batches spread
// over devices as dp says.
func newParallelTrainer(backend compute.Backend, m *Model, opt Optimizer, dp *dataParallel) (*trainer, error) {
	t := &trainer{backend: backend, m: m, opt: opt, dp: dp}
	if len(m.Trainable) == 0 {
		return nil, fmt.Errorf("the model has no trainable variables")
	}
	for i, v := range m.Trainable {
		if v.DType() != dtypes.Float32 {
			return nil, fmt.Errorf("trainable variable %s is %s; the optimiser needs float32", v.Path(), v.DType())
		}
		for _, kind := range []string{"grad", "adam_m", "adam_v"} {
			z := tensors.FromShape(v.Shape()) // zero-filled
			nv, err := m.Store.CreateVariable(fmt.Sprintf("%s/%s/%04d", stateScope, kind, i), z)
			if err != nil {
				return nil, err
			}
			nv.SetTrainable(false)
			switch kind {
			case "grad":
				t.acc = append(t.acc, nv)
			case "adam_m":
				t.m1 = append(t.m1, nv)
			default:
				t.m2 = append(t.m2, nv)
			}
		}
	}
	var err error
	if t.accLoss, err = m.Store.CreateVariable(stateScope+"/loss_sum", tensors.FromScalar(float32(0))); err != nil {
		return nil, err
	}
	t.accLoss.SetTrainable(false)
	if t.accTokens, err = m.Store.CreateVariable(stateScope+"/token_sum", tensors.FromScalar(float32(0))); err != nil {
		return nil, err
	}
	t.accTokens.SetTrainable(false)

	if t.accumulate, err = model.NewExecCanonical(backend, m.Store, t.accumulateGraph, 5, 1, false, true, true); err != nil {
		return nil, err
	}
	t.accumulate.WithName("train_micro_step")
	if t.apply, err = model.NewExecCanonical(backend, m.Store, t.applyGraph, 3, 3, false, true, true); err != nil {
		return nil, err
	}
	t.apply.WithName("train_optimizer_step")
	if t.step, err = model.NewExecCanonical(backend, m.Store, t.stepGraph, 8, 3, false, true, true); err != nil {
		return nil, err
	}
	t.step.WithName("train_step")
	if t.eval, err = model.NewExecCanonical(backend, m.Store, t.evalGraph, 5, 2, false, true, true); err != nil {
		return nil, err
	}
	t.eval.WithName("eval_step")
	for _, c := range []struct {
		exec          *model.Exec
		batch, scalar int
	}{{t.accumulate, 5, 0}, {t.apply, 0, 3}, {t.step, 5, 3}, {t.eval, 5, 0}} {
		if err := dp.configure(c.exec, c.batch, c.scalar); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func batchNodes(in []*Node) BatchNodes {
	return BatchNodes{IDs: in[0], Positions: in[1], Segments: in[2], Targets: in[3], Weights: in[4]}
}

// accumulateGraph: forward and backward of one micro-batch, gradients and
// loss added to the accumulators.
func (t *trainer) accumulateGraph(scope *model.Scope, g *Graph, in []*Node) []*Node {
	t.m.Store.SetTraining(g, true)
	b := batchNodes(in)
	loss := t.m.Loss(g, b, true)
	params := make([]*Node, len(t.m.Trainable))
	for i, v := range t.m.Trainable {
		params[i] = v.NodeValue(g)
	}
	grads := Gradient(loss, params...)
	for i, a := range t.acc {
		a.SetNodeValue(Add(a.NodeValue(g), grads[i]))
	}
	t.accLoss.SetNodeValue(Add(t.accLoss.NodeValue(g), loss))
	tokens := t.accTokens.NodeValue(g)
	tokens = Add(tokens, ReduceAllSum(ConvertDType(b.Weights, dtypes.Float32)))
	t.accTokens.SetNodeValue(tokens)
	return []*Node{tokens}
}

// applyGraph: one AdamW step on the accumulated gradients. Inputs are
// host-computed scalars: lr/(1-beta1^t), sqrt(1-beta2^t) and 1-lr*wd
// (PyTorch's formulation). Outputs: mean loss, gradient norm before
// clipping, number of loss tokens.
func (t *trainer) applyGraph(scope *model.Scope, g *Graph, in []*Node) []*Node {
	stepSize, sqrtBC2, decay := in[0], in[1], in[2]
	tokens := t.accTokens.NodeValue(g)
	denom := Max(tokens, Scalar(g, dtypes.Float32, 1))
	grads := make([]*Node, len(t.acc))
	var sq *Node
	for i, a := range t.acc {
		grads[i] = Div(a.NodeValue(g), denom)
		s := ReduceAllSum(Square(grads[i]))
		if sq == nil {
			sq = s
		} else {
			sq = Add(sq, s)
		}
	}
	norm := Sqrt(sq)
	if t.opt.MaxGradNorm > 0 {
		// torch.nn.utils.clip_grad_norm_: coef = max/(norm+1e-6), at most 1.
		coef := Div(Scalar(g, dtypes.Float32, t.opt.MaxGradNorm), AddScalar(norm, 1e-6))
		coef = Min(coef, Scalar(g, dtypes.Float32, 1))
		for i := range grads {
			grads[i] = Mul(grads[i], coef)
		}
	}
	b1, b2 := t.opt.Beta1, t.opt.Beta2
	for i, v := range t.m.Trainable {
		gr := grads[i]
		m := Add(MulScalar(t.m1[i].NodeValue(g), b1), MulScalar(gr, 1-b1))
		s := Add(MulScalar(t.m2[i].NodeValue(g), b2), MulScalar(Square(gr), 1-b2))
		p := Mul(v.NodeValue(g), decay)
		den := AddScalar(Div(Sqrt(s), sqrtBC2), t.opt.Epsilon)
		p = Sub(p, Mul(stepSize, Div(m, den)))
		t.m1[i].SetNodeValue(m)
		t.m2[i].SetNodeValue(s)
		v.SetNodeValue(p)
		t.acc[i].SetNodeValue(ZerosLike(gr))
	}
	meanLoss := Div(t.accLoss.NodeValue(g), denom)
	t.accLoss.SetNodeValue(ZerosLike(meanLoss))
	t.accTokens.SetNodeValue(ZerosLike(tokens))
	return []*Node{meanLoss, norm, tokens}
}

// stepGraph is the last micro-batch of a step and the optimiser update in
// one program: with grad_accum 1 the whole training step is one compiled
// program. Inputs: the five batch arrays, then applyGraph's three scalars.
func (t *trainer) stepGraph(scope *model.Scope, g *Graph, in []*Node) []*Node {
	t.accumulateGraph(scope, g, in[:5])
	return t.applyGraph(scope, g, in[5:])
}

// evalGraph: loss sum and weight sum of a batch, dropout off.
func (t *trainer) evalGraph(scope *model.Scope, g *Graph, in []*Node) []*Node {
	t.m.Store.SetTraining(g, false)
	b := batchNodes(in)
	loss := t.m.Loss(g, b, false)
	return []*Node{loss, ReduceAllSum(ConvertDType(b.Weights, dtypes.Float32))}
}

// batchTensorList makes host tensors of a batch's five arrays.
func batchTensorList(b *Batch) []*tensors.Tensor {
	return []*tensors.Tensor{
		tensors.FromFlatDataAndDimensions(b.IDs, b.Rows, b.Len),
		tensors.FromFlatDataAndDimensions(b.Positions, b.Rows, b.Len),
		tensors.FromFlatDataAndDimensions(b.Segments, b.Rows, b.Len),
		tensors.FromFlatDataAndDimensions(b.Targets, b.Rows, b.Len),
		tensors.FromFlatDataAndDimensions(b.Weights, b.Rows, b.Len),
	}
}

func finalize(ts []*tensors.Tensor) {
	for _, t := range ts {
		if t != nil {
			t.FinalizeAll()
		}
	}
}

// microStep runs forward and backward of one micro-batch on the device
// (of n combined micro-batches on n devices).
func (t *trainer) microStep(b *Batch) error {
	args, err := t.dp.args(b)
	if err != nil {
		return err
	}
	out, err := t.accumulate.Exec(args...)
	if err != nil {
		return err
	}
	finalize(out)
	return nil
}

// stepResult is what the host reads back once per optimiser step.
type stepResult struct {
	Loss, GradNorm float64
	LossTokens     int
}

// optimizerStep applies AdamW for optimiser step number n (1-based) at
// learning rate lr. With last set, the step's last micro-batch runs in
// the same program first; the loop does that when a step has a single
// micro-batch, since a second program holding the whole forward and
// backward pass would double the compilation time (a minute for the 3B
// model on a GPU) to save one call in grad_accum.
func (t *trainer) optimizerStep(n int, lr float64, last *Batch) (stepResult, error) {
	bc1 := 1 - math.Pow(t.opt.Beta1, float64(n))
	bc2 := 1 - math.Pow(t.opt.Beta2, float64(n))
	scalars := []*tensors.Tensor{
		tensors.FromScalar(float32(lr / bc1)),
		tensors.FromScalar(float32(math.Sqrt(bc2))),
		tensors.FromScalar(float32(1 - lr*t.opt.WeightDecay)),
	}
	exec := t.apply
	var args []any
	var err error
	if last != nil {
		exec = t.step
		args, err = t.dp.args(last, scalars...)
	} else {
		args, err = t.dp.args(nil, scalars...)
	}
	if err != nil {
		return stepResult{}, err
	}
	out, err := exec.Exec(args...)
	if err != nil {
		return stepResult{}, err
	}
	out = firstShard(out, 3)
	defer finalize(out)
	return stepResult{
		Loss:       float64(tensors.ToScalar[float32](out[0])),
		GradNorm:   float64(tensors.ToScalar[float32](out[1])),
		LossTokens: int(tensors.ToScalar[float32](out[2])),
	}, nil
}

// evalBatch returns the loss sum and the number of loss tokens of b.
func (t *trainer) evalBatch(b *Batch) (sum float64, tokens float64, err error) {
	args, err := t.dp.args(b)
	if err != nil {
		return 0, 0, err
	}
	out, err := t.eval.Exec(args...)
	if err != nil {
		return 0, 0, err
	}
	out = firstShard(out, 2)
	defer finalize(out)
	return float64(tensors.ToScalar[float32](out[0])), float64(tensors.ToScalar[float32](out[1])), nil
}

// evaluate returns the mean loss per loss token over batches.
func (t *trainer) evaluate(batches []*Batch) (float64, error) {
	var sum, n float64
	for _, g := range t.dp.groups(batches) {
		s, k, err := t.evalBatch(combine(g, t.dp.n))
		if err != nil {
			return 0, err
		}
		sum += s
		n += k
	}
	if n == 0 {
		return math.NaN(), nil
	}
	return sum / n, nil
}

var _ = shapes.Make
