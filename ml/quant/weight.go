package quant

import (
	"fmt"
)

// Scheme names a quantisation of the frozen base's linear weights.
type Scheme string

// The supported schemes.
const (
	None     Scheme = "none"
	SchemeI8 Scheme = "int8"
	SchemeNF Scheme = "nf4"
)

// ParseScheme checks a scheme name ("" means none).
func ParseScheme(s string) (Scheme, error) {
	switch Scheme(s) {
	case "", None:
		return None, nil
	case SchemeI8, SchemeNF:
		return Scheme(s), nil
	}
	return "", fmt.Errorf("unknown quantization %q (want \"none\", \"int8\" or \"nf4\")", s)
}

// Weight is one quantised [Rows, Cols] linear weight: exactly one of Int8
// and NF4 is set.
type Weight struct {
	Name string
	Int8 *Int8
	NF4  *NF4
}

// Scheme returns the weight's quantisation.
func (w *Weight) Scheme() Scheme {
	if w.Int8 != nil {
		return SchemeI8
	}
	return SchemeNF
}

// Shape returns the weight's [rows, cols] ([out, in]).
func (w *Weight) Shape() (rows, cols int) {
	if w.Int8 != nil {
		return w.Int8.Rows, w.Int8.Cols
	}
	return w.NF4.Rows, w.NF4.Cols
}

// Bytes returns the size of the quantised form.
func (w *Weight) Bytes() int64 {
	if w.Int8 != nil {
		return w.Int8.Bytes()
	}
	return w.NF4.Bytes()
}

// Quantize quantises a row-major [rows, cols] float32 weight with scheme
// (NF4 always with double quantisation, as QLoRA).
func Quantize(name string, scheme Scheme, w []float32, rows, cols int) (*Weight, error) {
	switch scheme {
	case SchemeI8:
		q, err := QuantizeInt8(w, rows, cols)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return &Weight{Name: name, Int8: q}, nil
	case SchemeNF:
		q, err := QuantizeNF4(w, rows, cols, true)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return &Weight{Name: name, NF4: q}, nil
	}
	return nil, fmt.Errorf("%s: cannot quantise with scheme %q", name, scheme)
}

// Dequantize returns the weight as row-major float32 values.
func (w *Weight) Dequantize() []float32 {
	if w.Int8 != nil {
		return w.Int8.Dequantize()
	}
	return w.NF4.Dequantize()
}
