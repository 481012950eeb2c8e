package quant

import (
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/pipeml/pipe/ml/safetensors"
)

func loadFixtures(t *testing.T) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open("testdata/quant_fixtures.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func fixF32(t *testing.T, f *safetensors.File, name string) ([]float32, []int) {
	t.Helper()
	tt, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("fixture %q missing", name)
	}
	v, err := tt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v, tt.Shape
}

func fixBytes(t *testing.T, f *safetensors.File, name string) []byte {
	t.Helper()
	tt, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("fixture %q missing", name)
	}
	return tt.Data
}

// relErr is ‖x·Wᵀ − x·Dᵀ‖/‖x·Wᵀ‖ in float64.
func relErr(x, w, d []float32, rows, cols int) float64 {
	n := len(x) / cols
	var num, den float64
	for i := range n {
		for r := range rows {
			var y, yq float64
			for c := range cols {
				xv := float64(x[i*cols+c])
				y += xv * float64(w[r*cols+c])
				yq += xv * float64(d[r*cols+c])
			}
			num += (y - yq) * (y - yq)
			den += y * y
		}
	}
	return math.Sqrt(num / den)
}

func TestDynamicMapMatchesFixture(t *testing.T) {
	f := loadFixtures(t)
	want, _ := fixF32(t, f, "dynamic_map")
	got := DynamicMap()
	if !slices.Equal(got[:], want) {
		t.Errorf("DynamicMap differs from the fixture:\n got %v\nwant %v", got, want)
	}
	if got[0] >= got[1] || got[255] != 1 || got[127] != 0 {
		t.Errorf("map not sorted or missing 0/1: %v %v %v", got[0], got[127], got[255])
	}
}

// The CUDA thresholds are the midpoints of the code up to one ulp: for
// thresholds 0, 8, 12 and 14 the float32 literal and the float32 midpoint
// differ by one ulp.
func TestNF4ThresholdsAreMidpoints(t *testing.T) {
	var off []int
	for i, th := range nf4Thresholds {
		mid := (NF4Code[i] + NF4Code[i+1]) / 2
		d := int64(math.Float32bits(th)) - int64(math.Float32bits(mid))
		if d < -1 || d > 1 {
			t.Errorf("threshold %d = %v, midpoint %v", i, th, mid)
		}
		if d != 0 {
			off = append(off, i)
		}
	}
	if !slices.Equal(off, []int{0, 8, 12, 14}) {
		t.Errorf("thresholds off their midpoint by one ulp: %v", off)
	}
}

func TestAgainstFixtures(t *testing.T) {
	f := loadFixtures(t)
	// Expected relative error of x·Wᵀ for normally distributed weights:
	// int8 about 0.6%, NF4 about 9% (QLoRA's 4 bits); the edge case has
	// outliers and zero blocks.
	bounds := map[string][2]float64{"int8": {0.003, 0.012}, "nf4": {0.04, 0.12}, "nf4dq": {0.04, 0.12}}
	for _, name := range []string{"normal", "dq3", "edge"} {
		w, shape := fixF32(t, f, name+".w")
		x, _ := fixF32(t, f, name+".x")
		rows, cols := shape[0], shape[1]
		t.Run(name+"/int8", func(t *testing.T) {
			q, err := QuantizeInt8(w, rows, cols)
			if err != nil {
				t.Fatal(err)
			}
			codes := fixBytes(t, f, name+".int8.codes")
			for i, c := range q.Codes {
				if byte(c) != codes[i] {
					t.Fatalf("code %d (row %d) = %d, want %d (w=%v)", i, i/cols, c, int8(codes[i]), w[i])
				}
			}
			absmax, _ := fixF32(t, f, name+".int8.absmax")
			if !slices.Equal(q.Absmax, absmax) {
				t.Errorf("absmax = %v, want %v", q.Absmax, absmax)
			}
			deq, _ := fixF32(t, f, name+".int8.deq")
			if got := q.Dequantize(); !slices.Equal(got, deq) {
				t.Errorf("dequantised values differ")
			}
			checkErr(t, f, name+".int8.relerr", relErr(x, w, q.Dequantize(), rows, cols), bounds["int8"])
		})
		for _, tag := range []string{"nf4", "nf4dq"} {
			t.Run(name+"/"+tag, func(t *testing.T) {
				q, err := QuantizeNF4(w, rows, cols, tag == "nf4dq")
				if err != nil {
					t.Fatal(err)
				}
				packed := fixBytes(t, f, name+"."+tag+".packed")
				if i := firstDiff(q.Packed, packed); i >= 0 {
					t.Fatalf("packed byte %d = %#x, want %#x (w = %v, %v)", i, q.Packed[i], packed[i], w[2*i], w[2*i+1])
				}
				if tag == "nf4" {
					absmax, _ := fixF32(t, f, name+".nf4.absmax")
					if !slices.Equal(q.Absmax, absmax) {
						t.Errorf("absmax differs")
					}
				} else {
					if i := firstDiff(q.QAbsmax, fixBytes(t, f, name+".nf4dq.qabsmax")); i >= 0 {
						t.Errorf("qabsmax %d = %d, want %d", i, q.QAbsmax[i], fixBytes(t, f, name+".nf4dq.qabsmax")[i])
					}
					a2, _ := fixF32(t, f, name+".nf4dq.absmax2")
					off, _ := fixF32(t, f, name+".nf4dq.offset")
					if !slices.Equal(q.Absmax2, a2) || q.Offset != off[0] {
						t.Errorf("absmax2 %v offset %v, want %v %v", q.Absmax2, q.Offset, a2, off[0])
					}
				}
				scales, _ := fixF32(t, f, name+"."+tag+".scales")
				if !slices.Equal(q.Scales(), scales) {
					t.Errorf("scales differ")
				}
				deq, _ := fixF32(t, f, name+"."+tag+".deq")
				if !slices.Equal(q.Dequantize(), deq) {
					t.Errorf("dequantised values differ")
				}
				checkErr(t, f, name+"."+tag+".relerr", relErr(x, w, q.Dequantize(), rows, cols), bounds[tag])
			})
		}
	}
}

func checkErr(t *testing.T, f *safetensors.File, key string, got float64, bounds [2]float64) {
	t.Helper()
	want, err := strconv.ParseFloat(f.Metadata()[key], 64)
	if err != nil {
		t.Fatalf("fixture metadata %q: %v", key, err)
	}
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("%s: relative matmul error %v, fixture %v", key, got, want)
	}
	if got < bounds[0] || got > bounds[1] {
		t.Errorf("%s: relative matmul error %v outside the expected [%v, %v]", key, got, bounds[0], bounds[1])
	}
}

func firstDiff[T comparable](a, b []T) int {
	if len(a) != len(b) {
		return 0
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func TestQuantizeErrors(t *testing.T) {
	if _, err := QuantizeNF4(make([]float32, 96), 3, 32, true); err == nil {
		t.Error("96 values is not a multiple of 64")
	}
	if _, err := QuantizeInt8(make([]float32, 5), 2, 3); err == nil {
		t.Error("5 values do not make [2, 3]")
	}
}
