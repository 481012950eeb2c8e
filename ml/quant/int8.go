package quant

import (
	"fmt"
	"math"
)

// Int8 is a [Rows, Cols] weight quantised to int8 with one scale per row.
type Int8 struct {
	Rows, Cols int
	// Codes holds Rows×Cols codes, row-major.
	Codes []int8
	// Absmax holds each row's largest absolute value (bitsandbytes' SCB);
	// a weight is Codes[i]·Absmax[row]/127.
	Absmax []float32
}

// QuantizeInt8 quantises a row-major [rows, cols] weight. As bitsandbytes
// does, it computes code = round(w · (127/absmax_row)) in float32 with
// round-half-to-even; an all-zero row gets zero codes.
func QuantizeInt8(w []float32, rows, cols int) (*Int8, error) {
	if rows <= 0 || cols <= 0 || len(w) != rows*cols {
		return nil, fmt.Errorf("int8: %d values do not make a [%d, %d] weight", len(w), rows, cols)
	}
	q := &Int8{Rows: rows, Cols: cols, Codes: make([]int8, len(w)), Absmax: make([]float32, rows)}
	for r := range rows {
		row := w[r*cols : (r+1)*cols]
		var m float32
		for _, v := range row {
			m = max(m, float32(math.Abs(float64(v))))
		}
		q.Absmax[r] = m
		if m == 0 {
			continue
		}
		s := float32(127) / m
		codes := q.Codes[r*cols : (r+1)*cols]
		for i, v := range row {
			codes[i] = int8(math.RoundToEven(float64(v * s)))
		}
	}
	return q, nil
}

// Dequantize returns the weight as float32: code·absmax·(1/127), computed
// as bitsandbytes' int8_vectorwise_dequant does.
func (q *Int8) Dequantize() []float32 {
	const inv127 = float32(7.874015718698502e-3)
	out := make([]float32, len(q.Codes))
	for r := range q.Rows {
		for c := range q.Cols {
			i := r*q.Cols + c
			out[i] = float32(q.Codes[i]) * q.Absmax[r] * inv127
		}
	}
	return out
}

// Bytes returns the size of the quantised form (codes and scales).
func (q *Int8) Bytes() int64 { return int64(len(q.Codes)) + 4*int64(len(q.Absmax)) }
