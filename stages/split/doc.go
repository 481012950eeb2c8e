// Package split is the `split` stage kind: it merges record inputs,
// tags their source, drops duplicates across sources, and splits the
// records into train and eval by group, so that no group (a session, a
// repository file) and no pair of near-duplicates straddles the split, and
// so that groups keep their side when the data grows.
//
// Reading inputs is package recordset's job; content keys and MinHash live
// in package dedupe.
package split
