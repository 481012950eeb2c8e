package train

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
)

func TestCheckDevices(t *testing.T) {
	for _, c := range []struct {
		have, requested, accum int
		want                   int
		err                    string
	}{
		{have: 1, requested: 1, accum: 24, want: 1},
		{have: 2, requested: 2, accum: 24, want: 2},
		{have: 8, requested: AllDevices, accum: 24, want: 8},
		{have: 4, requested: 2, accum: 2, want: 2},
		{have: 1, requested: 2, accum: 2, err: "has 1 device"},
		{have: 4, requested: 0, accum: 4, err: "positive"},
		{have: 4, requested: -3, accum: 4, err: "positive"},
		{have: 4, requested: 4, accum: 6, err: "not a multiple"},
		{have: 8, requested: AllDevices, accum: 12, err: "not a multiple"},
	} {
		got, err := checkDevices("test", c.have, c.requested, c.accum)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("checkDevices(%d, %d, %d) = %d, %v; want an error with %q", c.have, c.requested, c.accum, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("checkDevices(%d, %d, %d) = %d, %v; want %d", c.have, c.requested, c.accum, got, err, c.want)
		}
	}
	if n, err := resolveDevices(testBackend(t), AllDevices, 3); err != nil || n != 1 {
		t.Errorf("the Go backend: %d devices, %v; want 1", n, err)
	}
}

// rowOf returns row r of a batch's five arrays.
func rowOf(b *Batch, r int) [5][]float64 {
	var out [5][]float64
	for i, a := range [][]int32{b.IDs, b.Positions, b.Segments, b.Targets} {
		for _, v := range a[r*b.Len : (r+1)*b.Len] {
			out[i] = append(out[i], float64(v))
		}
	}
	for _, v := range b.Weights[r*b.Len : (r+1)*b.Len] {
		out[4] = append(out[4], float64(v))
	}
	return out
}

func TestCombine(t *testing.T) {
	exs := tinyExamples(5, 12, 6, 20)
	long := Pack(exs[:6], 32, 2)
	short := Bucket(exs[6:], 24, 2)
	if len(long) == 0 || len(short) == 0 || short[0].Len >= 32 {
		t.Fatalf("fixture: %d packed, %d bucketed batches (len %d)", len(long), len(short), short[0].Len)
	}
	bs := []*Batch{long[0], short[0]}
	// Four devices, two micro-batches: the last two get padding.
	c := combine(bs, 4)
	if c.Rows != 4*2 || c.Len != 32 {
		t.Fatalf("combined shape [%d %d], want [8 32]", c.Rows, c.Len)
	}
	if got, want := c.Tokens(), bs[0].Tokens()+bs[1].Tokens(); got != want {
		t.Errorf("tokens %d, want %d", got, want)
	}
	if got, want := c.LossTokens(), bs[0].LossTokens()+bs[1].LossTokens(); got != want {
		t.Errorf("loss tokens %d, want %d", got, want)
	}
	if c.Docs != bs[0].Docs+bs[1].Docs {
		t.Errorf("docs %d", c.Docs)
	}
	for i, b := range bs {
		for r := range b.Rows {
			got, want := rowOf(c, i*2+r), rowOf(b, r)
			for k := range want {
				if !slices.Equal(got[k][:b.Len], want[k]) {
					t.Errorf("micro-batch %d row %d array %d: %v, want %v", i, r, k, got[k][:b.Len], want[k])
				}
				for _, v := range got[k][b.Len:] {
					if v != 0 {
						t.Errorf("micro-batch %d row %d array %d: padding %v", i, r, k, got[k][b.Len:])
						break
					}
				}
			}
		}
	}
	for _, w := range c.Weights[2*2*32:] {
		if w != 0 {
			t.Fatal("the padding micro-batches carry loss weights")
		}
	}
	if combine(bs[:1], 1) != bs[0] {
		t.Error("one batch on one device is not passed through")
	}
}

// TestShardedArgs checks the mesh, the specs and that device i receives
// micro-batch i while scalars are replicated (dtensor sharding runs on the
// host, so it is testable without several devices).
func TestShardedArgs(t *testing.T) {
	dp, err := newDataParallel(2, false)
	if err != nil {
		t.Fatal(err)
	}
	if dp.mesh.NumDevices() != 2 || !slices.Equal(dp.mesh.AxesNames(), []string{meshAxis}) {
		t.Fatalf("mesh %s", dp.mesh)
	}
	if dp.batchSpec.IsReplicated() || !dp.replicated.IsReplicated() {
		t.Fatalf("specs: batch %s, replicated %s", dp.batchSpec, dp.replicated)
	}
	bs := Pack(tinyExamples(6, 10, 6, 20), 32, 1)[:2]
	args, err := dp.args(combine(bs, 2), tensors.FromScalar(float32(0.5)))
	if err != nil {
		t.Fatal(err)
	}
	if len(args) != 6 {
		t.Fatalf("%d arguments", len(args))
	}
	for i := range 5 {
		d := args[i].(interface {
			Shards() []*tensors.Tensor
		})
		for dev, sh := range d.Shards() {
			if dims := sh.Shape().Dimensions; !slices.Equal(dims, []int{1, 32}) {
				t.Fatalf("array %d device %d: shard shape %v", i, dev, dims)
			}
			want := rowOf(bs[dev], 0)[i]
			var got []float64
			switch i {
			case 4:
				for _, v := range tensors.MustCopyFlatData[float32](sh) {
					got = append(got, float64(v))
				}
			default:
				for _, v := range tensors.MustCopyFlatData[int32](sh) {
					got = append(got, float64(v))
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("array %d device %d: %v, want %v", i, dev, got, want)
			}
		}
	}
	sc := args[5].(interface {
		Shards() []*tensors.Tensor
	}).Shards()
	if len(sc) != 2 || tensors.ToScalar[float32](sc[0]) != 0.5 || tensors.ToScalar[float32](sc[1]) != 0.5 {
		t.Errorf("scalar shards %v", sc)
	}
}

// TestDevicesMatchOneDevice runs the loop with 2 and 4 micro-batches
// combined per program (the data-parallel path without the partitioning:
// the pure-Go backend has one device) against the plain one-device loop:
// the same steps, tokens, losses and final adapter up to floating-point
// reordering. The epoch's last step has fewer micro-batches than devices,
// so padding micro-batches are exercised too.
func TestDevicesMatchOneDevice(t *testing.T) {
	run := func(devices int) (*Report, []Metric, []float32) {
		dir := t.TempDir()
		m := newTinyModel(t, 1, 0)
		opts := tinyOptions(t, m, dir)
		opts.GradAccum, opts.Epochs = 4, 2
		opts.Devices, opts.simulateDevices = devices, devices > 1
		if n := len(opts.Train); n%4 == 0 || n%4 > 2 {
			t.Fatalf("fixture: %d micro-batches; want a last step of 1 or 2", n)
		}
		rep, err := Train(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := ReadMetrics(filepath.Join(dir, MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		var params []float32
		for _, v := range m.Trainable {
			params = append(params, tensors.MustCopyFlatData[float32](v.MustValue())...)
		}
		return rep, ms, params
	}
	rep1, ms1, p1 := run(1)
	for _, n := range []int{2, 4} {
		rep, ms, p := run(n)
		if rep.Devices != n || rep.Steps != rep1.Steps || rep.Tokens != rep1.Tokens || rep.StepsPerEpoch != rep1.StepsPerEpoch {
			t.Errorf("%d devices: report %+v; one device %+v", n, rep, rep1)
		}
		if len(ms) != len(ms1) {
			t.Fatalf("%d devices: %d metrics, one device %d", n, len(ms), len(ms1))
		}
		close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-4*max(1, math.Abs(b)) }
		for i := range ms {
			for _, pair := range [][2]*float64{{ms[i].Loss, ms1[i].Loss}, {ms[i].EvalLoss, ms1[i].EvalLoss}, {ms[i].GradNorm, ms1[i].GradNorm}} {
				if (pair[0] == nil) != (pair[1] == nil) || (pair[0] != nil && !close(*pair[0], *pair[1])) {
					t.Errorf("%d devices, metric %d (step %d): %v vs %v on one device", n, i, ms[i].Step, deref(pair[0]), deref(pair[1]))
				}
			}
		}
		for i := range p {
			if !close(float64(p[i]), float64(p1[i])) {
				t.Fatalf("%d devices: parameter %d is %v, one device %v", n, i, p[i], p1[i])
			}
		}
	}
}

func deref(v *float64) float64 {
	if v == nil {
		return math.NaN()
	}
	return *v
}
