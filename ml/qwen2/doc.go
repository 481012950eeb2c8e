// Package qwen2 is the Qwen2-family decoder (Qwen2.5, Qwen2.5-Coder, and
// Llama, which is the same network without q/k/v biases) written on GoMLX,
// with a frozen base that may be stored as bf16, int8 or NF4, LoRA adapters
// on any of the seven projections, a memory-frugal training loss and
// KV-cached generation.
//
// What it owns:
//   - the network (Model.Hidden, Model.Logits, Model.Loss): embedding,
//     RMSNorm (f32 inside), rotary embeddings, grouped-query attention with
//     per-document causal masks for packed sequences, SwiGLU MLP, tied or
//     untied LM head;
//   - the frozen base weights as non-trainable variables of a
//     model.Store, dequantised inside the compiled graph just before each
//     matmul (the formats and the graph functions are ml/quant's);
//   - LoRA: PEFT's initialisation and scaling, import and export in PEFT's
//     adapter format, and merging into the base (file formats are
//     ml/safetensors' and ml/checkpoint's);
//   - generation with a KV cache (greedy and sampled).
//
// What it does not own: reading and writing checkpoints and the HF config
// (ml/checkpoint), safetensors (ml/safetensors), hub downloads (ml/hub),
// quantisation formats (ml/quant) and the training loop (ml/train).
//
// Attention paths. On XLA with CUDA, attention goes through GoMLX's fused
// cuDNN flash attention (attention.Core). That kernel takes a causal flag,
// per-row sequence lengths or an additive bias of shape [B,H,S,S], but not
// a boolean mask; packed batches (segment ids) therefore pass the
// block-diagonal document mask as an additive bf16 bias (0 or -30000) next
// to the causal flag. That costs one [B,H,S,S] bf16 buffer per step (415 MB
// at B=1, H=16, S=3600) and a transient bias gradient of the same size per
// layer in the backward pass. Batches without segment ids use the pure
// causal kernel. On other backends (the pure-Go CPU backend) attention is
// computed explicitly with a boolean mask and an f32 softmax. Generation
// always uses the plain path (queries and keys differ in length).
//
// Training. Model.Loss returns a weighted sum of token cross-entropies whose
// autodiff gives the exact LoRA gradients while never materialising the
// float32 [tokens, vocab] logits (see Loss); the LM head and every base
// weight are frozen. LoRA dropout is active in graphs marked for training
// with m.Store.SetTraining(g, true) and draws from the Store's RNG
// (m.Store.SetRNGStateFromSeed).
//
// Training memory. Three things keep XLA from holding more than one
// layer's worth of backward-pass buffers at a time, each found in the
// scheduled program of the 3B step on an H100 (bench/hlo_peak.py reads it):
//   - gradient checkpointing (Options.GradientCheckpointing, GoMLX's
//     Checkpoint) with the frozen weights and dropout keys tied to the
//     layer input, so dequantised weights and masks are recomputed rather
//     than kept (pass.anchored);
//   - a gradient fence per layer (pass.fenceLayer): the gradient leaving a
//     layer waits for that layer's LoRA weight gradients, which XLA would
//     otherwise compute for all layers at the end of the step;
//   - the loss's vocabulary chunks chained one after another (Loss).
//
// Training precision. Activations and the backward pass run in the compute
// dtype (bf16 on the GPU) with float32 accumulation inside each matmul;
// norms, softmax and the loss run in float32; the LoRA weights and their
// gradients are float32. The base matmuls are built without GoMLX's
// float32 accumulator setting (project), which would otherwise turn the
// backward pass's dx = dy·W into float32 gemms.
//
// GoMLX v0.28.2 notes (checked on the pure-Go backend, forward and
// backward): Rsqrt has no gradient (the norm divides by Sqrt); the Go
// backend lacks DynamicSlice/DynamicUpdateSlice (the KV cache is written
// with Where over an Iota); DotBuilder.Einsum ignores WithOutputDType (use
// General for float32 outputs of bfloat16 operands); binary ops broadcast
// only between equal ranks; bfloat16 reductions on the Go backend
// accumulate in higher precision. The Go backend has no fused attention.
package qwen2
