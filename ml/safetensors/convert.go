package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
)

// Float32 converts a floating-point tensor to a new float32 slice. Only
// this tensor is converted, so a caller loading a model one weight at a
// time never holds two copies of the whole checkpoint.
func (t *Tensor) Float32() ([]float32, error) {
	out := make([]float32, t.NumElements())
	if err := t.Float32Into(out); err != nil {
		return nil, err
	}
	return out, nil
}

// Float32Into converts a floating-point tensor into dst, which must have
// exactly NumElements elements.
func (t *Tensor) Float32Into(dst []float32) error {
	n := t.NumElements()
	if len(dst) != n {
		return fmt.Errorf("%s: tensor %q: destination has %d elements, tensor has %d", t.File, t.Name, len(dst), n)
	}
	b := t.Data
	switch t.DType {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
	case F16:
		for i := range dst {
			dst[i] = float16.Float16(binary.LittleEndian.Uint16(b[2*i:])).Float32()
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	default:
		return fmt.Errorf("%s: tensor %q: cannot convert %s to float32", t.File, t.Name, t.DType)
	}
	return nil
}

// BFloat16 returns the tensor as bfloat16 values. A BF16 tensor whose bytes
// are suitably aligned is returned without copying (the slice aliases the
// mapping and must not be written); other float types are converted with
// round-to-nearest-even, as torch's .to(torch.bfloat16) does.
func (t *Tensor) BFloat16() ([]bfloat16.BFloat16, error) {
	n := t.NumElements()
	if t.DType == BF16 && littleEndian && n > 0 && uintptr(unsafe.Pointer(&t.Data[0]))%2 == 0 {
		return unsafe.Slice((*bfloat16.BFloat16)(unsafe.Pointer(&t.Data[0])), n), nil
	}
	out := make([]bfloat16.BFloat16, n)
	if t.DType == BF16 {
		for i := range out {
			out[i] = bfloat16.BFloat16(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
		return out, nil
	}
	if !t.DType.IsFloat() {
		return nil, fmt.Errorf("%s: tensor %q: cannot convert %s to bfloat16", t.File, t.Name, t.DType)
	}
	// Convert in chunks through a small float32 buffer.
	var buf [4096]float32
	sub := *t
	esz := t.DType.Size()
	for off := 0; off < n; off += len(buf) {
		m := min(len(buf), n-off)
		sub.Shape = []int{m}
		sub.Data = t.Data[off*esz : (off+m)*esz]
		if err := sub.Float32Into(buf[:m]); err != nil {
			return nil, err
		}
		for i, v := range buf[:m] {
			out[off+i] = bfloat16.FromFloat32(v)
		}
	}
	return out, nil
}

// Int64s converts an integer tensor (I8, U8, I16, U16, I32, U32, I64, BOOL)
// to int64 values.
func (t *Tensor) Int64s() ([]int64, error) {
	n := t.NumElements()
	out := make([]int64, n)
	b := t.Data
	for i := range out {
		switch t.DType {
		case I8:
			out[i] = int64(int8(b[i]))
		case U8, BOOL:
			out[i] = int64(b[i])
		case I16:
			out[i] = int64(int16(binary.LittleEndian.Uint16(b[2*i:])))
		case U16:
			out[i] = int64(binary.LittleEndian.Uint16(b[2*i:]))
		case I32:
			out[i] = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		case U32:
			out[i] = int64(binary.LittleEndian.Uint32(b[4*i:]))
		case I64:
			out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		default:
			return nil, fmt.Errorf("%s: tensor %q: cannot convert %s to int64", t.File, t.Name, t.DType)
		}
	}
	return out, nil
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// Float32Bytes encodes float32 values as little-endian bytes.
func Float32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// BFloat16Bytes encodes bfloat16 values as little-endian bytes.
func BFloat16Bytes(v []bfloat16.BFloat16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(x))
	}
	return b
}
