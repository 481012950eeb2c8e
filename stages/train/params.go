package train

import (
	"github.com/pipeml/pipe/stages"
	"github.com/zclconf/go-cty/cty"
)

// param declares a parameter of the stage (see stages.Param).
var param = stages.NewParam

var strList = stages.StringList

var (
	str = cty.StringVal
	num = cty.NumberFloatVal
	i64 = cty.NumberIntVal
)

// params are the stage's parameters with the original pipeline's defaults.
var params = []stages.Param{
	param("base_model", cty.String, str("Qwen/Qwen2.5-Coder-3B-Instruct"), "The base model when the `model` input is not set: a Hugging Face repository id (found in the Hugging Face cache, downloaded when missing unless `offline`), a local checkpoint folder, or `\"tiny\"` for the small random Qwen2 model that runs on a CPU in minutes. Also recorded as `base_model_name_or_path` in the adapter."),
	param("offline", cty.Bool, cty.False, "Never download the base model; use the Hugging Face cache only (also `HF_HUB_OFFLINE=1`)."),
	param("quantization", cty.String, str("int8"), "Storage of the frozen base's linear weights on the device: `\"int8\"` (production), `\"nf4\"` (development, least memory) or `\"none\"`."),
	param("dtype", cty.String, str("auto"), "Compute dtype: `\"bfloat16\"`, `\"float32\"`, or `\"auto\"` (bfloat16 on a GPU, float32 on the CPU)."),
	param("gradient_checkpointing", cty.Bool, cty.True, "Recompute each layer's activations, dequantised weights and dropout masks in the backward pass instead of keeping them (much less memory, a little slower)."),
	param("lora_r", cty.Number, i64(32), "LoRA rank."),
	param("lora_alpha", cty.Number, i64(64), "LoRA alpha (the update is scaled by alpha/r)."),
	param("lora_dropout", cty.Number, num(0.05), "Dropout on the LoRA input."),
	param("lora_targets", cty.List(cty.String), strList("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), "Projections that get adapters."),
	param("use_rslora", cty.Bool, cty.False, "Scale by alpha/sqrt(r) (rsLoRA) instead of alpha/r."),
	param("learning_rate", cty.Number, num(2e-5), "Peak learning rate."),
	param("lr_scheduler", cty.String, str("cosine"), "Learning-rate schedule after the warm-up: `\"cosine\"`, `\"linear\"` or `\"constant\"` (Hugging Face's)."),
	param("warmup_ratio", cty.Number, num(0.1), "Fraction of the optimiser steps spent warming up linearly from 0 (rounded up)."),
	param("weight_decay", cty.Number, num(0), "AdamW's decoupled weight decay (Hugging Face's default is 0)."),
	param("adam_beta1", cty.Number, num(0.9), "AdamW beta1."),
	param("adam_beta2", cty.Number, num(0.999), "AdamW beta2."),
	param("adam_epsilon", cty.Number, num(1e-8), "AdamW epsilon."),
	param("max_grad_norm", cty.Number, num(1), "Clip the gradient to this global L2 norm (0: no clipping)."),
	param("batch_size", cty.Number, i64(1), "Sequences per micro-batch."),
	param("grad_accum", cty.Number, i64(24), "Micro-batches per optimiser step (effective batch = batch_size × grad_accum sequences)."),
	param("devices", cty.Number, i64(1), "Devices (GPUs of this host) that train data-parallel through XLA's sharding, gradients all-reduced inside the compiled step (0: all of them). The effective batch stays batch_size × grad_accum: each device runs grad_accum/devices micro-batches per step (Hugging Face's per_device_train_batch_size = batch_size, gradient_accumulation_steps = grad_accum/devices), so grad_accum must be a multiple of devices and the result does not depend on the device count beyond floating-point rounding and dropout masks."),
	param("max_len", cty.Number, i64(3600), "Sequence length in tokens: the length of packed rows, and the longest example kept."),
	param("overlong", cty.String, str("truncate"), "Examples longer than max_len: `\"truncate\"` (keep the first max_len tokens) or `\"drop\"`. The report counts both."),
	param("packing", cty.Bool, cty.True, "Pack several examples into each max_len row, with per-document attention masks and position ids that restart; false runs each example in its own row padded to a length bucket (64, 128, ... max_len), so few programs compile."),
	param("train_on_all", cty.Bool, cty.False, "Compute the loss on every token instead of only assistant tokens (chat) and the middle (FIM)."),
	param("epochs", cty.Number, i64(5), "Passes over the training data."),
	param("max_steps", cty.Number, i64(0), "Stop after this many optimiser steps (0: run all epochs); the schedule spans the shorter of the two."),
	param("eval_steps", cty.Number, i64(50), "Evaluate every so many optimiser steps (0: only at the end of each epoch, which always happens)."),
	param("early_stopping_patience", cty.Number, i64(5), "Stop after this many evaluations in a row without an improvement of more than the threshold (0: never stop early)."),
	param("early_stopping_threshold", cty.Number, num(0.002), "Least improvement of the eval loss over the best so far that counts (Hugging Face semantics)."),
	param("save_steps", cty.Number, i64(0), "Write a checkpoint every so many optimiser steps (0: at every evaluation); one is also written at each epoch end and when the run is interrupted."),
	param("keep_checkpoints", cty.Number, i64(2), "Checkpoints kept (the newest)."),
	param("seed", cty.Number, i64(42), "Seed of the LoRA initialisation, the data order and dropout."),
	param("backend", cty.String, str("auto"), "`\"auto\"` (the GPU through XLA's CUDA PJRT plugin when there is an NVIDIA GPU, else the pure-Go CPU backend), `\"cuda\"`, `\"go\"`, or a GoMLX backend configuration such as `\"xla:/path/plugin.so\"`."),
	param("pjrt_plugin", cty.String, str(""), "Path of the CUDA PJRT plugin (.so); default $PIPE_PJRT_PLUGIN, else the usual install locations (PJRT_PLUGIN_LIBRARY_PATH, ~/.local/lib/go-xla, /usr/local/lib/go-xla, JAX's jax_plugins in Python site-packages)."),
	param("xla_options", cty.String, str("preallocate=false"), "Options appended to the XLA backend configuration."),
	param("run_dir", cty.String, str(".pipe/train"), "Folder (relative to the project) for checkpoints and logs, kept across interrupted runs; each stage and configuration gets a subfolder, and a run resumes from its latest checkpoint there."),
	param("merged", cty.Bool, cty.False, "Also write the base with the best adapter merged in, as a full checkpoint (output `merged`)."),
	param("merged_dtype", cty.String, str("BF16"), "Weight type of the merged checkpoint: `\"BF16\"` or `\"F32\"`."),
	param("loss_chunk", cty.Number, i64(0), "Vocabulary entries whose logits the loss computes at a time (0: the model's default)."),
	param("progress", cty.Bool, cty.True, "Draw a progress bar with tokens/s and ETA on stderr (redrawn in place on a terminal, a line every 30 s otherwise)."),
}

// config is the decoded parameters.
type config struct {
	BaseModel              string   `cty:"base_model"`
	Offline                bool     `cty:"offline"`
	Quantization           string   `cty:"quantization"`
	DType                  string   `cty:"dtype"`
	GradientCheckpointing  bool     `cty:"gradient_checkpointing"`
	LoraR                  int      `cty:"lora_r"`
	LoraAlpha              float64  `cty:"lora_alpha"`
	LoraDropout            float64  `cty:"lora_dropout"`
	LoraTargets            []string `cty:"lora_targets"`
	UseRSLoRA              bool     `cty:"use_rslora"`
	LearningRate           float64  `cty:"learning_rate"`
	LRScheduler            string   `cty:"lr_scheduler"`
	WarmupRatio            float64  `cty:"warmup_ratio"`
	WeightDecay            float64  `cty:"weight_decay"`
	AdamBeta1              float64  `cty:"adam_beta1"`
	AdamBeta2              float64  `cty:"adam_beta2"`
	AdamEpsilon            float64  `cty:"adam_epsilon"`
	MaxGradNorm            float64  `cty:"max_grad_norm"`
	BatchSize              int      `cty:"batch_size"`
	GradAccum              int      `cty:"grad_accum"`
	Devices                int      `cty:"devices"`
	MaxLen                 int      `cty:"max_len"`
	Overlong               string   `cty:"overlong"`
	Packing                bool     `cty:"packing"`
	TrainOnAll             bool     `cty:"train_on_all"`
	Epochs                 int      `cty:"epochs"`
	MaxSteps               int      `cty:"max_steps"`
	EvalSteps              int      `cty:"eval_steps"`
	EarlyStoppingPatience  int      `cty:"early_stopping_patience"`
	EarlyStoppingThreshold float64  `cty:"early_stopping_threshold"`
	SaveSteps              int      `cty:"save_steps"`
	KeepCheckpoints        int      `cty:"keep_checkpoints"`
	Seed                   int64    `cty:"seed"`
	Backend                string   `cty:"backend"`
	PJRTPlugin             string   `cty:"pjrt_plugin"`
	XLAOptions             string   `cty:"xla_options"`
	RunDir                 string   `cty:"run_dir"`
	Merged                 bool     `cty:"merged"`
	MergedDType            string   `cty:"merged_dtype"`
	LossChunk              int      `cty:"loss_chunk"`
	Progress               bool     `cty:"progress"`
}
