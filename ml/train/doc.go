// Package train is the fine-tuning loop: it reads tokenised examples,
// packs them into fixed-length sequences (or buckets them by length),
// compiles one training step per shape on a GoMLX backend, and runs AdamW
// with a warm-up + cosine schedule, gradient accumulation, global-norm
// clipping, periodic evaluation with Hugging Face's early stopping,
// atomic checkpoints that resume bit for bit, TensorBoard event files, a
// metrics.jsonl file, a progress bar and a loss-curve PNG.
//
// The network is not this package's: Train takes a Model (a model.Store,
// the list of trainable variables, a function that builds the loss graph
// of a batch and one that exports the adapter). Package ml/qwen2 provides
// the real one; the tests use a tiny language model of their own.
//
// Training state lives on the device between steps: the trainable
// variables, AdamW's moments and the gradient accumulators are variables
// of the model's Store, updated in place (donated buffers) by compiled
// programs. With grad_accum 1 a training step is one program (forward,
// backward, normalise, clip, AdamW); with grad_accum n it is n calls of a
// micro-batch program (forward, backward, accumulate) and one of a small
// update program. Nothing is read back
// to the host per micro-batch; per step the host reads three scalars
// (loss, gradient norm, token count).
//
// The event file format is ml/tensorboard's and the PNG is ml/plot's;
// stages/train adapts this package to the pipeline's stage API.
package train
