// Package dedupe finds duplicate and near-duplicate dataset records. It
// owns what "the same content" means for a record (ExactKey, over
// normalised text), the text that near-duplicate detection compares
// (Text, CodeText), MinHash sketches with LSH banding (MinHasher,
// Candidates) and the clustering of candidate pairs (Components).
//
// It is a library shared by the quality stage (which drops duplicates)
// and the split stage (which keeps near-duplicates on one side of the
// split); it is not a stage kind itself. Reading record files is package
// recordset's job.
package dedupe
