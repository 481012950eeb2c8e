package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/pipeml/pipe/ml/safetensors"
)

// progress is the loop's position and bookkeeping, saved with every
// checkpoint. Together with the variables it is everything a resumed run
// needs to continue exactly as if it had never stopped.
type progress struct {
	// Step is the number of optimiser steps done.
	Step int `json:"step"`
	// Epoch and Micro are the position in the data: the next micro-batch
	// is number Micro of epoch Epoch's order (see epochOrder).
	Epoch int `json:"epoch"`
	Micro int `json:"micro"`
	// Fingerprint identifies the training data and the settings that
	// shape the run; a checkpoint with another fingerprint is not resumed.
	Fingerprint string `json:"fingerprint"`
	// Early stopping (Hugging Face semantics) and the best adapter.
	BestEvalLoss    *float64 `json:"best_eval_loss,omitempty"`
	BestStep        int      `json:"best_step,omitempty"`
	PatienceCounter int      `json:"patience_counter"`
	Stopped         bool     `json:"stopped,omitempty"`
	// Tokens counts the non-padding tokens trained on so far.
	Tokens int64 `json:"tokens"`
	// Elapsed is the training time so far, in seconds.
	Elapsed float64 `json:"elapsed_seconds"`
}

const (
	checkpointPrefix = "checkpoint-"
	stateFile        = "state.safetensors"
	progressFile     = "progress.json"
)

// stateVariables are the variables a checkpoint holds, keyed by name in
// the file: the trainable ones, AdamW's moments and the store's random
// number generator state when it has one.
func (t *trainer) stateVariables() map[string]*model.Variable {
	vars := map[string]*model.Variable{}
	for i, v := range t.m.Trainable {
		vars["param"+v.Path()] = v
		vars["adam_m"+v.Path()] = t.m1[i]
		vars["adam_v"+v.Path()] = t.m2[i]
	}
	if v := t.m.Store.GetVariable("/" + model.RNGStateVariableName); v != nil && v.HasValue() {
		vars["rng_state"] = v
	}
	return vars
}

var toSafetensors = map[dtypes.DType]safetensors.DType{
	dtypes.Float32: safetensors.F32, dtypes.Float64: safetensors.F64, dtypes.BFloat16: safetensors.BF16,
	dtypes.Float16: safetensors.F16, dtypes.Int32: safetensors.I32, dtypes.Int64: safetensors.I64,
	dtypes.Uint64: safetensors.U64, dtypes.Uint32: safetensors.U32, dtypes.Int8: safetensors.I8,
	dtypes.Uint8: safetensors.U8,
}

// saveCheckpoint writes the state and p into root/checkpoint-<step>,
// atomically: everything goes into a temporary folder that is renamed into
// place. It then removes all but the newest keep checkpoints (keep <= 0
// keeps all).
func (t *trainer) saveCheckpoint(root string, p progress, keep int) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	final := filepath.Join(root, fmt.Sprintf("%s%08d", checkpointPrefix, p.Step))
	tmp, err := os.MkdirTemp(root, ".tmp-checkpoint-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	vars := t.stateVariables()
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	var entries []safetensors.Entry
	for _, n := range names {
		v := vars[n]
		val, err := v.Value()
		if err != nil {
			return fmt.Errorf("checkpoint %s: %v", v.Path(), err)
		}
		dt, ok := toSafetensors[val.DType()]
		if !ok {
			return fmt.Errorf("checkpoint %s: unsupported dtype %s", v.Path(), val.DType())
		}
		var data []byte
		if err := val.ConstBytes(func(b []byte) { data = slices.Clone(b) }); err != nil {
			return fmt.Errorf("checkpoint %s: %v", v.Path(), err)
		}
		entries = append(entries, safetensors.Entry{Name: n, DType: dt, Shape: val.Shape().Dimensions, Data: data})
	}
	if err := safetensors.Write(filepath.Join(tmp, stateFile), entries, map[string]string{"format": "pipe-train"}); err != nil {
		return err
	}
	pj, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(tmp, progressFile), append(pj, '\n')); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	// A checkpoint of the same step (a run that resumed before it and
	// got here again) is replaced.
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if err := syncDir(root); err != nil {
		return err
	}
	if keep > 0 {
		cps, err := listCheckpoints(root)
		if err != nil {
			return err
		}
		for len(cps) > keep {
			if err := os.RemoveAll(filepath.Join(root, cps[0])); err != nil {
				return err
			}
			cps = cps[1:]
		}
	}
	return nil
}

// listCheckpoints returns the complete checkpoint folders under root,
// oldest first.
func listCheckpoints(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type cp struct {
		name string
		step int
	}
	var cps []cp
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), checkpointPrefix) {
			continue
		}
		step, err := strconv.Atoi(strings.TrimPrefix(e.Name(), checkpointPrefix))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, e.Name(), progressFile)); err != nil {
			continue
		}
		cps = append(cps, cp{e.Name(), step})
	}
	sort.Slice(cps, func(i, j int) bool { return cps[i].step < cps[j].step })
	out := make([]string, len(cps))
	for i, c := range cps {
		out[i] = c.name
	}
	return out, nil
}

// loadCheckpoint restores the variables and returns the progress of the
// checkpoint folder dir.
func (t *trainer) loadCheckpoint(dir string) (progress, error) {
	var p progress
	pj, err := os.ReadFile(filepath.Join(dir, progressFile))
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(pj, &p); err != nil {
		return p, fmt.Errorf("%s: %v", filepath.Join(dir, progressFile), err)
	}
	f, err := safetensors.Open(filepath.Join(dir, stateFile))
	if err != nil {
		return p, err
	}
	defer f.Close()
	vars := t.stateVariables()
	for name, v := range vars {
		st, ok := f.Tensor(name)
		if !ok {
			return p, fmt.Errorf("%s: checkpoint has no tensor %q", dir, name)
		}
		if !slices.Equal(st.Shape, v.Shape().Dimensions) || toSafetensors[v.DType()] != st.DType {
			return p, fmt.Errorf("%s: tensor %q is %s%v, the model has %s%v", dir, name, st.DType, st.Shape, v.DType(), v.Shape().Dimensions)
		}
		val := tensors.FromShape(v.Shape())
		if err := val.MutableBytes(func(b []byte) { copy(b, st.Data) }); err != nil {
			return p, err
		}
		if err := v.SetValue(val); err != nil {
			return p, err
		}
	}
	return p, nil
}

func writeFileSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
