package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/gobackend"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// backend returns the pure-Go backend (tests never load XLA).
func backend(t *testing.T) compute.Backend {
	t.Helper()
	b, err := gobackend.New("")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomWeight(rows, cols int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = bfloat16.FromFloat32(float32(rng.NormFloat64() * 0.02)).Float32()
	}
	return w
}

// TestGraphDequantize checks the in-graph dequantisation against the Go
// one, bit for bit in float32 and after rounding to bfloat16, and that the
// gradient of a loss through x·dequant(W)ᵀ reaches the activations x.
func TestGraphDequantize(t *testing.T) {
	b := backend(t)
	const rows, cols, batch = 48, 320, 3 // 240 blocks: the DQ groups are partial
	w := randomWeight(rows, cols, 3)
	rng := rand.New(rand.NewPCG(4, 4))
	x := make([]float32, batch*cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	r := make([]float32, batch*rows)
	for i := range r {
		r[i] = float32(rng.NormFloat64())
	}
	for _, scheme := range []Scheme{SchemeI8, SchemeNF} {
		for _, dq := range []bool{true, false} {
			if scheme == SchemeI8 && !dq {
				continue
			}
			name := string(scheme)
			qw, err := Quantize("w", scheme, w, rows, cols)
			if err != nil {
				t.Fatal(err)
			}
			if scheme == SchemeNF && !dq {
				name += "-nodq"
				qw.NF4, _ = QuantizeNF4(w, rows, cols, false)
			}
			t.Run(name, func(t *testing.T) {
				parts := qw.Parts()
				inputs := []any{}
				for _, p := range parts {
					inputs = append(inputs, p.Tensor)
				}
				inputs = append(inputs, tensors.FromFlatDataAndDimensions(x, batch, cols), tensors.FromFlatDataAndDimensions(r, batch, rows))
				exec, err := G.NewExec(b, func(in []*G.Node) []*G.Node {
					m := map[string]*G.Node{}
					for i, p := range parts {
						m[p.Suffix] = in[i]
					}
					xn, rn := in[len(parts)], in[len(parts)+1]
					wf, err := Dequantize(scheme, m, dtypes.Float32)
					if err != nil {
						panic(err)
					}
					wb, _ := Dequantize(scheme, m, dtypes.BFloat16)
					y := G.MatMul(xn, G.Transpose(wf, 0, 1))
					loss := G.ReduceAllSum(G.Mul(y, rn))
					grad := G.Gradient(loss, xn)[0]
					return []*G.Node{wf, wb, grad}
				})
				if err != nil {
					t.Fatal(err)
				}
				out, err := exec.Exec(inputs...)
				if err != nil {
					t.Fatal(err)
				}
				want := qw.Dequantize()
				gotF := tensors.MustCopyFlatData[float32](out[0])
				if i := firstDiff(gotF, want); i >= 0 {
					t.Fatalf("float32 weight %d = %v, Go dequantises %v", i, gotF[i], want[i])
				}
				gotB := tensors.MustCopyFlatData[bfloat16.BFloat16](out[1])
				for i, v := range want {
					if gotB[i] != bfloat16.FromFloat32(v) {
						t.Fatalf("bf16 weight %d = %v, want %v", i, gotB[i], bfloat16.FromFloat32(v))
					}
				}
				// d(sum(r ⊙ x·Wᵀ))/dx = r·W.
				grad := tensors.MustCopyFlatData[float32](out[2])
				for i := range batch {
					for c := range cols {
						var s float64
						for o := range rows {
							s += float64(r[i*rows+o]) * float64(want[o*cols+c])
						}
						if g := grad[i*cols+c]; math.Abs(float64(g)-s) > 1e-4*(1+math.Abs(s)) {
							t.Fatalf("grad[%d,%d] = %v, want %v", i, c, g, s)
						}
					}
				}
			})
		}
	}
}

func TestParts(t *testing.T) {
	w := randomWeight(4, 128, 9)
	qw, _ := Quantize("w", SchemeNF, w, 4, 128)
	var got []string
	for _, p := range qw.Parts() {
		got = append(got, p.Suffix+p.Tensor.Shape().String())
	}
	want := []string{"packed(Uint8)[4, 64]", "qabsmax(Uint8)[8]", "absmax2(Float32)[1]", "offset(Float32)"}
	if !slices.Equal(got, want) {
		t.Errorf("parts = %v, want %v", got, want)
	}
}
