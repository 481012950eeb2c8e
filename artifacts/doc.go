// Package artifacts owns what flows between stages: content digests
// (BLAKE3), the Artifact descriptor, manifests of folder artifacts, and
// streaming JSONL readers and writers of the dataset record types
// (chat SFT records and prompt/completion records such as FIM).
//
// It imports nothing of the engine, the stages or ml; all of them may
// import it.
package artifacts
