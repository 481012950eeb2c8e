package quant

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/pipeml/pipe/ml/checkpoint"
	"github.com/pipeml/pipe/ml/safetensors"
)

// FileFormat is the __metadata__ "format" of a quantised-weights file, and
// FileVersion its version; a change to either invalidates cached files.
const (
	FileFormat  = "pipe-quant"
	FileVersion = "1"
)

// WriteFile writes quantised weights as one safetensors file: each part as
// "<weight name>.<suffix>" (see Weight.Parts), with metadata
// {"format": "pipe-quant", "version": "1", "scheme": ...} plus the given
// entries (for example the digest of the source checkpoint). The bytes are
// deterministic.
func WriteFile(path string, ws []*Weight, metadata map[string]string) error {
	meta := map[string]string{"format": FileFormat, "version": FileVersion}
	for k, v := range metadata {
		meta[k] = v
	}
	var entries []safetensors.Entry
	for _, w := range ws {
		if _, ok := meta["scheme"]; !ok {
			meta["scheme"] = string(w.Scheme())
		} else if meta["scheme"] != string(w.Scheme()) {
			return fmt.Errorf("%s: weight %s is %s, others are %s", path, w.Name, w.Scheme(), meta["scheme"])
		}
		for _, p := range w.Parts() {
			dt := map[string]safetensors.DType{"codes": safetensors.I8, "packed": safetensors.U8, "qabsmax": safetensors.U8}[p.Suffix]
			if dt == "" {
				dt = safetensors.F32
			}
			entries = append(entries, safetensors.Entry{
				Name:  w.Name + "." + p.Suffix,
				DType: dt,
				Shape: p.Tensor.Shape().Dimensions,
				Data:  partBytes(w, p.Suffix),
			})
		}
	}
	return safetensors.Write(path, entries, meta)
}

func partBytes(w *Weight, suffix string) []byte {
	f32 := func(v []float32) []byte { return safetensors.Float32Bytes(v) }
	if q := w.Int8; q != nil {
		if suffix == "codes" {
			b := make([]byte, len(q.Codes))
			for i, c := range q.Codes {
				b[i] = byte(c)
			}
			return b
		}
		return f32(q.Absmax)
	}
	q := w.NF4
	switch suffix {
	case "packed":
		return q.Packed
	case "qabsmax":
		return q.QAbsmax
	case "absmax2":
		return f32(q.Absmax2)
	case "offset":
		return f32([]float32{q.Offset})
	}
	return f32(q.Absmax)
}

// ReadFile reads a file written by WriteFile and returns its weights in
// name order and its metadata.
func ReadFile(path string) ([]*Weight, map[string]string, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	meta := f.Metadata()
	if meta["format"] != FileFormat || meta["version"] != FileVersion {
		return nil, nil, fmt.Errorf("%s: not a %s v%s file (format %q, version %q)", path, FileFormat, FileVersion, meta["format"], meta["version"])
	}
	scheme := Scheme(meta["scheme"])
	byName := map[string]*Weight{}
	get := func(name string) *Weight {
		w := byName[name]
		if w == nil {
			w = &Weight{Name: name}
			byName[name] = w
		}
		return w
	}
	f32 := func(t *safetensors.Tensor) []float32 {
		v, _ := t.Float32()
		return v
	}
	for _, tn := range f.Names() {
		t, _ := f.Tensor(tn)
		i := strings.LastIndexByte(tn, '.')
		if i < 0 {
			return nil, nil, fmt.Errorf("%s: tensor %q is not <weight>.<part>", path, tn)
		}
		name, suffix := tn[:i], tn[i+1:]
		w := get(name)
		bad := func() error {
			return fmt.Errorf("%s: tensor %q: unexpected %s%v for a %s weight", path, tn, t.DType, t.Shape, scheme)
		}
		switch scheme {
		case SchemeI8:
			if w.Int8 == nil {
				w.Int8 = &Int8{}
			}
			switch {
			case suffix == "codes" && t.DType == safetensors.I8 && len(t.Shape) == 2:
				w.Int8.Rows, w.Int8.Cols = t.Shape[0], t.Shape[1]
				w.Int8.Codes = make([]int8, len(t.Data))
				for i, b := range t.Data {
					w.Int8.Codes[i] = int8(b)
				}
			case suffix == "absmax" && t.DType == safetensors.F32 && len(t.Shape) == 1:
				w.Int8.Absmax = f32(t)
			default:
				return nil, nil, bad()
			}
		case SchemeNF:
			if w.NF4 == nil {
				w.NF4 = &NF4{}
			}
			q := w.NF4
			switch {
			case suffix == "packed" && t.DType == safetensors.U8 && len(t.Shape) == 2:
				q.Rows, q.Cols = t.Shape[0], 2*t.Shape[1]
				q.Packed = slices.Clone(t.Data)
			case suffix == "qabsmax" && t.DType == safetensors.U8 && len(t.Shape) == 1:
				q.QAbsmax = slices.Clone(t.Data)
			case suffix == "absmax2" && t.DType == safetensors.F32 && len(t.Shape) == 1:
				q.Absmax2 = f32(t)
			case suffix == "absmax" && t.DType == safetensors.F32 && len(t.Shape) == 1:
				q.Absmax = f32(t)
			case suffix == "offset" && t.DType == safetensors.F32 && len(t.Shape) == 0:
				q.Offset = math.Float32frombits(binary.LittleEndian.Uint32(t.Data))
			default:
				return nil, nil, bad()
			}
		default:
			return nil, nil, fmt.Errorf("%s: unknown scheme %q in metadata", path, scheme)
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	ws := make([]*Weight, 0, len(names))
	for _, n := range names {
		w := byName[n]
		if err := w.check(); err != nil {
			return nil, nil, fmt.Errorf("%s: weight %s: %v", path, n, err)
		}
		ws = append(ws, w)
	}
	return ws, meta, nil
}

// check verifies that a weight read from a file is complete and consistent.
func (w *Weight) check() error {
	if q := w.Int8; q != nil {
		if q.Codes == nil || len(q.Absmax) != q.Rows {
			return fmt.Errorf("incomplete int8 weight")
		}
		return nil
	}
	q := w.NF4
	nb := q.Rows * q.Cols / NF4BlockSize
	if q.Packed == nil || (q.Rows*q.Cols)%NF4BlockSize != 0 {
		return fmt.Errorf("incomplete nf4 weight")
	}
	if q.Absmax != nil {
		if len(q.Absmax) != nb || q.QAbsmax != nil {
			return fmt.Errorf("nf4 weight has %d scales for %d blocks", len(q.Absmax), nb)
		}
		return nil
	}
	if len(q.QAbsmax) != nb || len(q.Absmax2) != (nb+DQBlockSize-1)/DQBlockSize {
		return fmt.Errorf("nf4 weight has %d/%d double-quantised scales for %d blocks", len(q.QAbsmax), len(q.Absmax2), nb)
	}
	return nil
}

// QuantizeModel quantises every linear projection weight of a checkpoint
// (the seven projections of each layer; embeddings, LM head, norms and
// biases stay as they are) with the given scheme, converting and
// quantising one tensor at a time on up to GOMAXPROCS goroutines. The
// result is in checkpoint.Weights order.
func QuantizeModel(ctx context.Context, m *checkpoint.Model, scheme Scheme) ([]*Weight, error) {
	var specs []checkpoint.WeightSpec
	for _, s := range checkpoint.Weights(m.Config) {
		if s.Kind == checkpoint.KindLinear {
			specs = append(specs, s)
		}
	}
	out := make([]*Weight, len(specs))
	errs := make([]error, len(specs))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, s := range specs {
		if err := ctx.Err(); err != nil {
			wg.Wait()
			return nil, err
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t, err := m.Tensor(s.Name)
			if err != nil {
				errs[i] = err
				return
			}
			v, err := t.Float32()
			if err != nil {
				errs[i] = err
				return
			}
			out[i], errs[i] = Quantize(s.Name, scheme, v, s.Shape[0], s.Shape[1])
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
