// Package cache is pipe's content-addressed store, modelled on the go
// command's build cache.
//
// Objects (output files, per-item results, folder manifests) are stored by
// the BLAKE3 digest of their bytes under objects/<2 hex>/<digest>. Action
// entries map an action key (the hash of a stage's full recipe, built with
// a Hasher) to the artifacts it produced, under actions/<2 hex>/<key>.
// Every write goes to a temporary name, is fsynced and renamed, so a crash
// or a kill at any moment leaves either the whole entry or nothing. Reads
// verify digests: a corrupt object is reported with ErrCorrupt and
// dropped, so that the caller recomputes it.
//
// StatMemo remembers file digests by (device, inode, size, mtime, ctime)
// so that unchanged inputs are not hashed again, and HashPaths hashes many
// files in parallel. ItemIndex records the per-item results of map stages.
//
// The package knows nothing of HCL, the configuration, stages or the
// engine; package engine decides what goes into a key.
package cache
