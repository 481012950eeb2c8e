// Package lengths is the `lengths` stage kind: it tokenizes dataset
// records as training will and reports their token lengths per source
// (count, mean, max, nearest-rank percentiles), the max_len that keeps a
// given share of them, and a histogram as a PNG drawn with image/png and
// a bitmap font.
//
// Tokenizing belongs to package tokenizer and reading record files to
// package recordset; dropping records that are too long is the quality
// stage's job.
package lengths
