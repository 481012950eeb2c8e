package qwen2

import (
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// TestBackwardBaseMatmulsInComputeDType checks that a bf16 model's backward
// pass multiplies by the frozen weights in bf16. GoMLX's default float32
// accumulator for half-precision dots made autodiff convert every
// activation gradient and dequantised weight to float32 and run those
// matmuls as float32 gemms (see project).
func TestBackwardBaseMatmulsInComputeDType(t *testing.T) {
	backend := testBackend(t)
	weightShapes := map[string]bool{}
	for _, s := range tinyConfig.BaseTensors() {
		if strings.HasSuffix(s.Name, "_proj.weight") {
			weightShapes[shapes.Make(dtypes.Float32, s.Shape...).String()] = true
		}
	}
	b := packedBatch(16, 2, tinyConfig.VocabSize, 6)
	for _, ckpt := range []bool{false, true} {
		m := randomModel(t, tinyConfig, Options{DType: dtypes.BFloat16, Quantization: QuantInt8, GradientCheckpointing: ckpt}, 5)
		if err := m.AddLoRA(LoRAConfig{Rank: 4, Alpha: 8, Dropout: 0.1}, 2); err != nil {
			t.Fatal(err)
		}
		var f32, bf16 int
		for _, n := range trainingGradients(t, backend, m, b)[0].Graph().Nodes() {
			if n.Type() != G.NodeTypeDotGeneral {
				continue
			}
			for _, x := range n.Inputs() {
				s := x.Shape()
				if s.Rank() != 2 || !weightShapes[shapes.Make(dtypes.Float32, s.Dimensions...).String()] {
					continue
				}
				switch s.DType {
				case dtypes.Float32:
					f32++
				case dtypes.BFloat16:
					bf16++
				}
			}
		}
		// The forward pass has one bf16 matmul per projection (two with
		// checkpointing); the backward pass adds one per projection whose
		// input needs a gradient (all but layer 0's q, k and v).
		projections := 7 * tinyConfig.NumLayers
		forward := projections
		if ckpt {
			forward *= 2
		}
		want := forward + projections - 3
		if bf16 < want || f32 != 0 {
			t.Errorf("checkpointing=%v: matmuls by a frozen weight: %d in bf16, %d in float32; want at least %d and none",
				ckpt, bf16, f32, want)
		}
	}
}

// TestBFloat16LoRAGradients compares a bf16 model's LoRA gradients with
// the same model's in float32 (same int8 weights, same batch): the bf16
// backward pass must stay close to the float32 one.
func TestBFloat16LoRAGradients(t *testing.T) {
	backend := testBackend(t)
	cfg := tinyConfig
	cfg.HiddenSize, cfg.IntermediateSize, cfg.HeadDim = 64, 176, 16
	b := packedBatch(48, 2, cfg.VocabSize, 3)
	grads := map[dtypes.DType][][]float32{}
	for _, dt := range []dtypes.DType{dtypes.Float32, dtypes.BFloat16} {
		m := randomModel(t, cfg, Options{DType: dt, Quantization: QuantInt8}, 11)
		if err := m.AddLoRA(LoRAConfig{Rank: 8, Alpha: 16}, 4); err != nil {
			t.Fatal(err)
		}
		for _, v := range m.TrainableVariables() { // B starts at zero: give A a gradient
			vals := tensors.MustCopyFlatData[float32](v.MustValue())
			for i := range vals {
				vals[i] += 0.02 * float32((i*7)%5-2)
			}
			v.MustSetValue(tensors.FromFlatDataAndDimensions(vals, v.Shape().Dimensions...))
		}
		res, err := lossGradExec(t, backend, m, false, true).Exec(b.tokens, b.positions, b.segments, b.targets, b.weights)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res[2:] {
			grads[dt] = append(grads[dt], tensors.MustCopyFlatData[float32](r))
		}
	}
	worst := 0.0
	for i, want := range grads[dtypes.Float32] {
		worst = max(worst, relErr(grads[dtypes.BFloat16][i], want))
	}
	t.Logf("largest relative error of a bf16 LoRA gradient against float32: %.4f", worst)
	if worst > 0.05 {
		t.Errorf("bf16 LoRA gradients differ from float32 by up to %.4f (max|diff|/max|want|), want <= 0.05", worst)
	}
}
