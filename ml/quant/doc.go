// Package quant holds the quantised forms of a frozen base model's linear
// weights and the GoMLX graph functions that dequantise them inside the
// compiled graph, just before each matmul, so that the weights live on the
// device in their compact form.
//
// Two schemes are supported:
//
//   - int8: symmetric, one scale per output row, code = round(127·w/absmax_row)
//     (round half to even), as bitsandbytes' int8_vectorwise_quant does;
//     w ≈ code·absmax_row/127.
//   - NF4: QLoRA's 4-bit NormalFloat as bitsandbytes implements it: blocks of
//     64 consecutive weights (row-major), absmax per block, each weight mapped
//     to the nearest of 16 code values by bitsandbytes' midpoint thresholds,
//     two codes a byte (the first in the high nibble), and double
//     quantisation of the block absmax values: their mean is subtracted and
//     the rest quantised to 8 bits in blocks of 256 with bitsandbytes'
//     signed dynamic map.
//
// Quantising happens once in Go (QuantizeInt8, QuantizeNF4, QuantizeModel);
// the results serialise to a safetensors file (WriteFile, OpenFile) so that a
// quantised base is a cacheable artifact and later runs skip the work.
//
// Package checkpoint loads the weights; package qwen2 calls the graph
// functions here (Int8Weight, NF4Weight) in place of its bf16 weights.
package quant
