# pipe's default pipeline: your Claude Code history and your code in, a
# fine-tuned coding assistant out.
#
#   claude_logs ─┐
#                ├─ quality ─ split ─┬─ lengths
#   code_fim ────┘                   ├─ train ─ eval
#                                    └─────────┘
#
# `go tool task run` (or `pipe run`) runs it on this machine's CPU with the
# tiny generated model and a small sample of data, in a few minutes. On a GPU
# machine, one variable switches to the real model and the full settings:
#
#   pipe run -var model=Qwen/Qwen2.5-Coder-3B-Instruct
#
# A second run with nothing changed executes nothing; new logs mean only the
# new sessions are converted.

variable "model" {
  type        = string
  default     = "tiny"
  description = "Base model: \"tiny\" (a small random Qwen2 generated locally, for the CPU demo), a Hugging Face id such as Qwen/Qwen2.5-Coder-3B-Instruct, or a checkpoint folder."
}

variable "claude_projects" {
  type        = string
  default     = ""
  description = "Folder of Claude Code transcripts. Empty: ~/.claude/projects when it holds any, else the sample sessions in examples/claude_logs."
}

variable "repos" {
  type        = list(string)
  default     = ["."]
  description = "Code repositories to cut Fill-in-the-Middle examples from (default: this repository)."
}

variable "quantization" {
  type        = string
  default     = "int8"
  description = "Frozen base weights on the device: int8 (production), nf4 (development, least memory) or none."
}

locals {
  tiny      = var.model == "tiny"
  home_logs = "${env("HOME")}/.claude/projects"
  logs = (
    var.claude_projects != "" ? [var.claude_projects] :
    length(glob("${local.home_logs}/*/*.jsonl")) > 0 ? [local.home_logs] :
    ["examples/claude_logs"]
  )
  # The CPU demo keeps everything small; the real model gets the original
  # pipeline's settings (max length 3600, effective batch 24, 5 epochs).
  max_len    = local.tiny ? 384 : 3600
  fim_len    = local.tiny ? 384 : 1600
  grad_accum = local.tiny ? 1 : 24
  epochs     = local.tiny ? 1 : 5
  max_steps  = local.tiny ? 30 : 0
  eval_steps = local.tiny ? 15 : 50
  max_eval   = local.tiny ? 12 : 2000
  lr         = local.tiny ? 5e-3 : 2e-5
}

# 1. Claude Code sessions to chat SFT records with real tool calls.
stage "claude_logs" "sessions" {
  logs = local.logs
}

# 2. Fill-in-the-Middle examples cut out of the code repositories.
stage "code_fim" "code" {
  repos    = var.repos
  per_file = 1
  max_len  = local.fim_len
}

# 3. Quality checks, secret gate, exact and near-duplicate removal.
stage "quality" "clean" {
  records = [stage.claude_logs.sessions.records, stage.code_fim.code.records]
}

# 4. Train/eval split by session and file, stable as data grows.
stage "split" "data" {
  records  = [stage.quality.clean.records]
  max_eval = local.max_eval
}

# 5. Token lengths per source and the max_len that keeps 95% of records.
stage "lengths" "tokens" {
  records = [stage.split.data.train, stage.split.data.eval]
}

# 6. QLoRA fine-tuning: frozen quantised base, LoRA adapters.
stage "train" "lora" {
  train        = [stage.split.data.train]
  eval         = [stage.split.data.eval]
  base_model   = var.model
  quantization = var.quantization
  max_len      = local.max_len
  grad_accum   = local.grad_accum
  epochs       = local.epochs
  max_steps    = local.max_steps
  learning_rate = local.lr
  eval_steps    = local.eval_steps
}

# 7. Base against tuned: loss per source, FIM infilling, chat samples.
stage "eval" "report" {
  records      = [stage.split.data.eval]
  adapters     = [stage.train.lora.adapter]
  base_model   = var.model
  quantization = var.quantization
  max_len      = local.max_len
  # The CPU demo scores a handful of infillings; the GPU the default 200.
  fim_max_examples    = local.tiny ? 8 : 200
  max_new_tokens      = local.tiny ? 24 : 128
  chat_samples        = local.tiny ? 2 : 4
  chat_max_new_tokens = local.tiny ? 24 : 256
}
