// Package quality is the `quality` stage kind: it checks dataset records
// (schema, empty and short turns, length in tokens, code-corpus filters,
// a secret gate), removes exact duplicates and MinHash-LSH near-duplicates,
// and writes the kept records, the rejected ones with their reason, and a
// report.
//
// Reading inputs is package recordset's job; content keys and MinHash live
// in package dedupe; secrets are found by package secrets; token counts
// come from package tokenizer.
package quality
