// Package eval measures a base model against LoRA-tuned versions of it on
// an evaluation split: token-weighted eval loss and perplexity with the
// training loss masks (overall, for chat and FIM records, and per
// meta.source), greedy fill-in-the-middle completion scored by exact match
// and edit similarity, and chat answers side by side. It writes
// eval_report.json, a Markdown page and PNG charts.
//
// What it owns: the evaluation loop over a qwen2.Model and its adapters,
// the scorers (ExactFirstLine, ExactMiddle, EditSimilarity), the report
// and its charts. What it does not own: the network, adapters and KV-cached
// generation (ml/qwen2), checkpoints (ml/checkpoint, ml/hub), the backend
// choice (ml/train.OpenBackend), the tokenizer (package tokenizer, reached
// through the Tokenizer interface so that this package does not link it),
// and the stage adapter (stages/eval).
package eval
