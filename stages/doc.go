// Package stages defines the stage API: a stage kind's Definition (name,
// documentation, version, parameter schema as hcldec data, inputs, outputs,
// constructor), the Stage and Mapper interfaces the engine drives, and the
// Registry that cmd/pipe fills with the built-in kinds.
//
// Each built-in kind lives in its own package under stages/ and exports
// `var Definition`. The engine (package engine) decodes stage blocks with
// a Definition's Spec, computes cache keys and runs stages; this package
// knows nothing of the engine, the cache or the ml package.
package stages
