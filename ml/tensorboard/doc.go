// Package tensorboard writes TensorBoard event files: the TFRecord framing
// (length, masked CRC-32C, payload, masked CRC-32C) around hand-encoded
// tf.Event protocol buffers that carry scalar summaries. It needs no
// protobuf library and no TensorFlow.
//
// A Writer creates events.out.tfevents.<unix seconds>.<host> in a folder,
// starts it with the file_version event TensorBoard expects and appends
// one event per scalar. ReadFile parses such files back (framing, both
// checksums and the scalar fields), for tests and for tools that want the
// numbers without TensorBoard.
//
// The training loop (package ml/train) is the writer's user; this package
// knows nothing of training.
package tensorboard
