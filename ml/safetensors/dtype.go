package safetensors

import "fmt"

// DType is a safetensors element type, spelled as in the file header.
type DType string

// The element types of the safetensors format.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
)

// dtypeOrder gives the rank the reference implementation sorts tensors by
// when it writes a file (larger alignment first).
var dtypeSizes = map[DType]int{
	BOOL: 1, U8: 1, I8: 1, F8E4M3: 1, F8E5M2: 1,
	I16: 2, U16: 2, F16: 2, BF16: 2,
	I32: 4, U32: 4, F32: 4,
	F64: 8, I64: 8, U64: 8,
}

// Size returns the number of bytes of one element, or 0 for an unknown type.
func (d DType) Size() int { return dtypeSizes[d] }

// Valid reports whether d is a type this package understands.
func (d DType) Valid() bool { return dtypeSizes[d] != 0 }

// IsFloat reports whether d is one of the floating-point types that
// Float32 and BFloat16 convert from.
func (d DType) IsFloat() bool {
	switch d {
	case F16, BF16, F32, F64:
		return true
	}
	return false
}

func (d DType) String() string { return string(d) }

func parseDType(s string) (DType, error) {
	d := DType(s)
	if !d.Valid() {
		return "", fmt.Errorf("unknown dtype %q", s)
	}
	return d, nil
}
