// Package train is the `train` stage kind: QLoRA fine-tuning of a Qwen2
// model on the split stage's train/eval records, with package ml/train's
// loop and ml/qwen2's network. It is the only stage package that imports
// ml; it turns the stage's parameters into ml options, tokenises records
// with package tokenizer, keeps checkpoints in a run folder that survives
// interruptions, and copies the results into the stage's outputs.
package train

import "github.com/pipeml/pipe/stages"

var doc = `Fine-tune a Qwen2 model with LoRA on a quantised base

Tokenises the ` + "`train`" + ` and ` + "`eval`" + ` records with the model's tokenizer
(the Qwen2.5 chat template for chat records, prompt + completion for FIM
records), computing the loss only on assistant tokens and FIM middles
unless train_on_all. Examples longer than max_len are truncated or dropped
(overlong); with packing (the default) examples are packed into rows of
max_len tokens whose documents do not attend to each other and whose
position ids restart, otherwise each example runs alone, padded to a length
bucket.

The frozen base is stored int8 or NF4 on the device and dequantised inside
the compiled step; only the LoRA adapters train, with AdamW (PyTorch's
update), global-norm clipping, a warm-up then cosine (or linear, constant)
schedule and gradient accumulation: forward, backward and accumulation of a
micro-batch are one compiled program, the optimiser update another, and the
weights, moments and accumulators stay on the device.

Every eval_steps steps and at each epoch end the eval loss is computed;
early stopping follows Hugging Face's EarlyStoppingCallback (an improvement
counts when it beats the best eval loss by more than the threshold; training
stops after early_stopping_patience evaluations without one) and the best
adapter is kept. Checkpoints (adapter, AdamW moments, schedule position,
data position, dropout RNG) are written atomically under run_dir, the newest
keep_checkpoints kept. A run that is interrupted (Ctrl-C, a crash, a kill)
fails, so the engine never records it as done; running it again resumes
from the latest checkpoint and, on the CPU, ends with the same adapter bit
for bit as an uninterrupted run.

**Backends.** On a machine with an NVIDIA GPU the step runs through XLA's
CUDA PJRT plugin (found from pjrt_plugin, $PIPE_PJRT_PLUGIN or the usual
install locations; nothing is ever downloaded, and a missing plugin is an
error that says what to install). Elsewhere it runs on the pure-Go CPU
backend, which suits the ` + "`tiny`" + ` model and short sequences (max_len of a
few hundred tokens).

**Outputs.** The best and last adapters in PEFT's format, the tokenizer
files, training_report.json, metrics.jsonl, TensorBoard event files, a
loss-curve PNG and, with merged = true, a merged checkpoint. The adapters
are byte-for-byte reproducible on the CPU; the metrics, events and report
hold timings and are not.

## Parameters

` + stages.ParamDoc(params)
