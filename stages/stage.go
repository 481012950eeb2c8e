package stages

import (
	"context"
	"io"
	"log/slog"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Definition describes one stage kind: its name in pipeline.hcl, its
// documentation, its version (part of every cache key it produces), the
// schema of its parameters, its inputs and outputs, and a constructor.
//
// A Definition is plain data. Built-in kinds export one as
// `var Definition = &stages.Definition{...}` and cmd/pipe lists them in one
// place; nothing registers itself.
type Definition struct {
	// Name is the kind as written in `stage "<name>" "<label>" {}`.
	Name string
	// Doc is Markdown. Its first line is a one-line title.
	Doc string
	// Version is bumped whenever the stage's output for the same inputs and
	// parameters changes; it is hashed into every action key.
	Version string
	// Spec is the schema of the stage's parameters (everything that is not
	// an input path nor an engine meta-argument). The engine decodes the
	// block body with it, so type errors are diagnostics with ranges, and
	// hashes the decoded value in canonical form into the action key.
	Spec hcldec.ObjectSpec
	// Inputs are attributes whose values are paths (files, folders or
	// globs on disk, or references to other stages' outputs). The engine
	// decodes them, resolves globs, checks that they exist and hashes the
	// content (not the names) of what they point to into the action key.
	Inputs []InputSpec
	// Outputs are the artifacts the stage writes. Other stages refer to
	// them as stage.<kind>.<label>.<output name>.
	Outputs []OutputSpec
	// OutputsOf, when set, gives the outputs of a stage from its decoded
	// parameters instead of Outputs, for kinds whose outputs the user
	// declares (such as the command stage). cfg is as for New.
	OutputsOf func(cfg cty.Value) []OutputSpec
	// New builds a stage from its decoded parameters. cfg is an object
	// value conforming to Spec. Returned diagnostics should carry ranges
	// (the engine passes the block's range in Env for runtime errors).
	New func(cfg cty.Value) (Stage, hcl.Diagnostics)
}

// InputSpec declares one input attribute of a stage kind.
type InputSpec struct {
	Name     string
	Doc      string
	Required bool
	// List means the attribute takes a list of paths; otherwise a single
	// path string.
	List bool
}

// OutputKind says whether an output is one file or a folder.
type OutputKind int

const (
	// File is an output that is a single file.
	File OutputKind = iota
	// Dir is an output that is a folder; the cache stores it as a manifest
	// of its files' digests.
	Dir
)

// OutputSpec declares one output of a stage kind.
type OutputSpec struct {
	Name string
	Doc  string
	Kind OutputKind
}

// Stage is one configured instance of a kind, ready to run.
type Stage interface {
	// Run does the stage's work. It reads from env.Inputs and writes
	// every declared output to env.OutputPath(name). It must honour ctx.
	Run(ctx context.Context, env *Env) error
}

// Keyer is implemented by stages whose result depends on more than their
// parameters and input files: an external program's content, declared
// environment variables. The engine calls KeyParts before every run and
// hashes the returned name/value pairs into the action key (and into the
// per-item keys of a Mapper).
type Keyer interface {
	KeyParts(ctx context.Context, env *Env) (map[string]string, error)
}

// Input is one resolved input attribute: the paths it names (globs
// expanded, sorted) as the engine saw them.
type Input struct {
	Name  string
	Paths []string
}

// Env is what the engine hands a stage for one run. It is valid for one
// call of Run (or one Items/Map/Reduce sequence) only.
type Env struct {
	// Stage is the label of the stage block; Kind its kind.
	Stage, Kind string
	// Inputs holds the resolved input attributes by name.
	Inputs map[string]Input
	// OutDir is a private, empty folder; outputs are written under it at
	// OutputPath(name) and moved into the cache by the engine when Run
	// returns without error. A failed or cancelled run leaves nothing.
	OutDir string
	// WorkDir is the project folder (where pipeline.hcl is); relative
	// paths in parameters are relative to it. Input paths are absolute.
	WorkDir string
	// TempDir is a private scratch folder removed after the run.
	TempDir string
	// Parallelism is how many goroutines the stage may keep busy.
	Parallelism int
	// Logger is tagged with the stage name.
	Logger *slog.Logger
	// Progress reports items done of total; it may be nil.
	Progress func(done, total int)
	// Range is the stage block's definition range, for diagnostics about
	// runtime failures (a stage returns hcl.Diagnostics as its error).
	Range hcl.Range
	// Summary is filled by the stage (in Run or Reduce) with a few
	// headline numbers (records in, out, dropped by reason, ...). The
	// engine stores it in the run record and prints it in `pipe run`
	// and `--json` summaries. Values must marshal to JSON.
	Summary map[string]any
}

// OutputPath is where the stage writes its output called name.
func (e *Env) OutputPath(name string) string {
	return e.OutDir + "/" + name
}

// Paths returns the resolved paths of input name, or nil when the input
// was not set.
func (e *Env) Paths(name string) []string {
	return e.Inputs[name].Paths
}

// Item is one independently processed unit of a map stage's input.
type Item struct {
	// Key is the item's stable identity (for example a path relative to
	// the input root). Results are reduced in Key order, which makes the
	// output independent of listing order and parallelism.
	Key string
	// Files are the files whose content defines the item. The engine
	// hashes them; an item is recomputed only when one of them changes.
	Files []string
}

// ItemResult is the cached result of one item.
type ItemResult struct {
	Item Item
	// Open returns the bytes Map wrote for the item.
	Open func() (io.ReadCloser, error)
}

// Mapper is implemented by stages whose input splits into items that are
// processed independently. The engine caches each item's result under
// H(stage key parts, item key, item file digests): when one file among
// thousands is new or changed, only that item's Map runs again; Reduce
// then assembles the stage's outputs from every item's (cached) result.
//
// Map must be deterministic and must not depend on other items. It may be
// called concurrently for different items.
type Mapper interface {
	Stage
	Items(ctx context.Context, env *Env) ([]Item, error)
	Map(ctx context.Context, env *Env, item Item, w io.Writer) error
	Reduce(ctx context.Context, env *Env, results []ItemResult) error
}

// RunMapper runs a Mapper without any cache: every item is mapped, in Key
// order, then reduced. Mapper implementations use it for their Run method,
// which serves tests and callers outside the engine; the engine itself
// drives Items, Map and Reduce with per-item caching and parallelism.
func RunMapper(ctx context.Context, env *Env, m Mapper) error {
	items, err := m.Items(ctx, env)
	if err != nil {
		return err
	}
	sortItems(items)
	results := make([]ItemResult, len(items))
	for i, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		var buf bytesBuffer
		if err := m.Map(ctx, env, it, &buf); err != nil {
			return err
		}
		data := buf.Bytes()
		results[i] = ItemResult{Item: it, Open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytesReader(data)), nil
		}}
		if env.Progress != nil {
			env.Progress(i+1, len(items))
		}
	}
	return m.Reduce(ctx, env, results)
}
