package train

import (
	"fmt"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/distributed"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/core/tensors/dtensor"
	"github.com/gomlx/gomlx/ml/model"
)

// Data parallelism.
//
// With Options.Devices = n > 1 the loop runs n micro-batches at once, one
// per device, through XLA's own distribution as GoMLX exposes it: each
// compiled program is set to AutoSharding (XLA Shardy) over a
// one-dimensional device mesh with axis "data"; the five batch arrays are
// sharded along their rows axis, everything else (the frozen base, the
// adapter, the optimiser state, the scalar inputs and the outputs) is
// replicated. The partitioner inserts the all-reduce of the gradients (and
// of the loss and token sums) inside the compiled step; nothing is
// exchanged by hand.
//
// The effective batch does not depend on n: an optimiser step still
// consumes grad_accum micro-batches of batch_size rows, n of them at a
// time, so grad_accum must be a multiple of n. In Hugging Face's terms that
// is per_device_train_batch_size = batch_size, gradient_accumulation_steps
// = grad_accum/n on n devices. Because the loss is a sum over tokens
// divided by the step's token count (not a mean per device), the update is
// the same for any n up to floating-point reordering (and the dropout
// masks, which come from per-device random streams).

// meshAxis is the name of the data-parallel axis of the device mesh.
const meshAxis = "data"

// dataParallel is how the step's micro-batches map onto devices.
type dataParallel struct {
	// n micro-batches run at once (one per device).
	n int
	// mesh is nil when n is 1, or when the n micro-batches are only
	// concatenated and run on one device (Options.simulateDevices, a test
	// of everything but the partitioning on a single-device backend).
	mesh                  *distributed.DeviceMesh
	batchSpec, replicated *distributed.ShardingSpec
}

// AllDevices as Options.Devices runs on every device of the backend.
const AllDevices = -1

// resolveDevices returns the number of devices to use: requested, or all
// of the backend's for AllDevices. The step's grad_accum micro-batches are
// spread over them, so gradAccum must be a multiple of the result.
func resolveDevices(backend compute.Backend, requested, gradAccum int) (int, error) {
	return checkDevices(backend.Name(), backend.NumDevices(), requested, gradAccum)
}

// checkDevices is resolveDevices for a backend called name with have
// devices.
func checkDevices(name string, have, requested, gradAccum int) (int, error) {
	n := requested
	switch {
	case requested == AllDevices:
		n = have
	case requested < 1:
		return 0, fmt.Errorf("devices is %d; use a positive number, or AllDevices", requested)
	case requested > have:
		return 0, fmt.Errorf("devices is %d but the backend %s has %d device(s)", requested, name, have)
	}
	if gradAccum%n != 0 {
		return 0, fmt.Errorf("grad_accum %d is not a multiple of the %d devices: each device runs grad_accum/devices micro-batches per step, so the effective batch stays batch_size × grad_accum", gradAccum, n)
	}
	return n, nil
}

// newDataParallel builds the mesh and sharding specs for n devices; with
// simulate the micro-batches are combined but run on one device.
func newDataParallel(n int, simulate bool) (*dataParallel, error) {
	dp := &dataParallel{n: max(1, n)}
	if dp.n == 1 || simulate {
		return dp, nil
	}
	mesh, err := distributed.NewDeviceMesh([]int{dp.n}, []string{meshAxis})
	if err != nil {
		return nil, err
	}
	dp.mesh = mesh
	if dp.batchSpec, err = distributed.BuildSpec(mesh).S(meshAxis).Done(); err != nil {
		return nil, err
	}
	dp.replicated = distributed.NewReplicatedShardingSpec(mesh)
	return dp, nil
}

// configure sets exec to run across the mesh: its first batchInputs
// inputs sharded along rows, the rest and all outputs replicated, and the
// Store's variables replicated by default.
func (dp *dataParallel) configure(exec *model.Exec, batchInputs, otherInputs int) error {
	if dp.mesh == nil {
		return nil
	}
	specs := make([]*distributed.ShardingSpec, 0, batchInputs+otherInputs)
	for range batchInputs {
		specs = append(specs, dp.batchSpec)
	}
	for range otherInputs {
		specs = append(specs, dp.replicated)
	}
	exec.AutoSharding(dp.mesh).WithInputShardingSpecs(specs...).WithOutputShardingSpecs(dp.replicated)
	return exec.SetDefaultShardingSpec(dp.replicated)
}

// args turns a combined batch (nil for none) and scalar inputs into the program's
// arguments: host tensors on one device, distributed tensors (the batch
// split by rows, the scalars replicated) on a mesh.
func (dp *dataParallel) args(b *Batch, scalars ...*tensors.Tensor) ([]any, error) {
	var ts []*tensors.Tensor
	if b != nil {
		ts = batchTensorList(b)
	}
	nb := len(ts)
	ts = append(ts, scalars...)
	out := make([]any, len(ts))
	if dp.mesh == nil {
		for i, t := range ts {
			out[i] = t
		}
		return out, nil
	}
	for i, t := range ts {
		spec := dp.replicated
		if i < nb {
			spec = dp.batchSpec
		}
		d, err := dtensor.ShardTensor(spec, t)
		if err != nil {
			return nil, err
		}
		t.FinalizeAll()
		out[i] = d
	}
	return out, nil
}

// groups splits k micro-batches into runs of at most n, one micro-batch a
// device.
func (dp *dataParallel) groups(bs []*Batch) [][]*Batch {
	var out [][]*Batch
	for i := 0; i < len(bs); i += dp.n {
		out = append(out, bs[i:min(i+dp.n, len(bs))])
	}
	return out
}

// combine concatenates up to n micro-batches along the rows axis, each
// padded to the group's largest Rows and Len, and fills the devices left
// without one with an all-padding micro-batch (segment 0, weight 0: no loss,
// no tokens, no gradient). Device i gets micro-batch i. With n = 1 the
// single batch is returned as it is.
func combine(bs []*Batch, n int) *Batch {
	if n == 1 && len(bs) == 1 {
		return bs[0]
	}
	rows, length := 0, 0
	for _, b := range bs {
		rows, length = max(rows, b.Rows), max(length, b.Len)
	}
	out := newBatch(n*rows, length)
	for i, b := range bs {
		for r := range b.Rows {
			src := r * b.Len
			dst := (i*rows + r) * length
			copy(out.IDs[dst:dst+b.Len], b.IDs[src:src+b.Len])
			copy(out.Positions[dst:dst+b.Len], b.Positions[src:src+b.Len])
			copy(out.Segments[dst:dst+b.Len], b.Segments[src:src+b.Len])
			copy(out.Targets[dst:dst+b.Len], b.Targets[src:src+b.Len])
			copy(out.Weights[dst:dst+b.Len], b.Weights[src:src+b.Len])
		}
		out.Docs += b.Docs
	}
	return out
}

// firstShard keeps the first device's copy of a program's outputs (they
// are replicated) and frees the others: out holds numOutputs per device.
func firstShard(out []*tensors.Tensor, numOutputs int) []*tensors.Tensor {
	if len(out) > numOutputs {
		finalize(out[numOutputs:])
		out = out[:numOutputs]
	}
	return out
}
