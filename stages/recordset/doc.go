// Package recordset reads the record inputs of data stages: JSONL files
// and folders of them (walked for *.jsonl), in a canonical order, without
// failing on bad lines. A malformed line is skipped and reported with its
// file and line, so one broken record never stops a run.
//
// Writing records is artifacts.RecordWriter's job; deduplication and
// near-duplicate detection live in package dedupe.
package recordset
