// Package checkpoint reads and writes Hugging Face causal-LM checkpoint
// folders of the Qwen2 family (Qwen2, Qwen2.5, Qwen2.5-Coder, and Llama,
// which is the same architecture without q/k/v biases): config.json, the
// safetensors weights (single or sharded) and the tokenizer files.
//
// It also generates random-weight models of any size with Hugging Face's
// initialisation (WriteRandom), including the small model the CPU tests and
// the demo use (EnsureTiny), so nothing has to be downloaded to run them.
//
// Package safetensors does the file format; package hub finds and downloads
// checkpoints in the Hugging Face cache; package qwen2 builds the network
// from a Model.
package checkpoint
