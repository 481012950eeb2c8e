// Package config reads pipeline.hcl files.
//
// Decoding happens in two phases. This package decodes the file's
// structure and the meta-arguments (variable, locals and workspace blocks;
// stage block labels and depends_on) and evaluates variables and locals.
// Each stage's own body is kept as an hcl.Body: package engine decodes it
// later with the stage kind's schema, in an evaluation context that adds
// the outputs of other stages (stage.<kind>.<label>.<output>).
//
// Every problem a user can fix is returned as hcl.Diagnostics with a
// source range.
package config
