// Package safetensors reads and writes the safetensors format that Hugging
// Face checkpoints and PEFT adapters use: an 8-byte little-endian header
// length, a JSON header mapping tensor names to dtype, shape and byte offsets
// (plus an optional "__metadata__" string map), then the raw little-endian
// tensor bytes.
//
// Files are memory-mapped, so opening a multi-gigabyte checkpoint costs no
// heap: a Tensor's Data aliases the mapping, and conversions to float32 or
// bfloat16 happen one tensor at a time on demand. Sharded checkpoints
// (model-0000N-of-0000M.safetensors with model.safetensors.index.json) open
// as one Set. Writers produce byte-for-byte deterministic files.
//
// This package knows nothing about models: package checkpoint maps tensor
// names to a Qwen2 configuration, and package quant turns weights into their
// quantised form.
package safetensors
