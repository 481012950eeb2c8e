// Package engine plans and runs pipelines.
//
// Plan (plan.go) decodes every stage block of a config.Pipeline with its
// kind's schema, checks references, builds the dependency graph from them
// and constructs the stages. Key computation (key.go) hashes a stage's
// kind, version, parameters and input contents into an action key.
// Run (walk.go) walks the graph in parallel: each stage waits for its
// dependencies, then holds a parallelism slot only while it executes
// (exec.go): cache lookup and verification, or a run in a private folder
// whose outputs move into the cache on success; map stages (stages.Mapper)
// get a per-item cache (mapper.go). Workspace (workspace.go) owns the
// workspace folder: lock, run records, stage state and materialised
// outputs. Explain (explain.go) tells what a run would do and why.
//
// The cache itself is package cache; the configuration language is package
// engine/config; stage kinds implement package stages.
package engine
