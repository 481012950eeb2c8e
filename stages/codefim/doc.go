// Package codefim is the `code_fim` stage kind: it walks code
// repositories (honouring .gitignore, skipping VCS, vendored, binary,
// generated, minified and lock files) and draws Fill-in-the-Middle
// examples from each source file, with middles at line boundaries and, for
// Go, at go/ast boundaries, sized in tokens of the Qwen2.5 tokenizer.
//
// It is a map stage with one item per file, so a changed file is the only
// one extracted again. Tokenizing belongs to package tokenizer; quality
// filters and deduplication across files to the quality stage.
package codefim
