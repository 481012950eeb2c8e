// Package stagestest holds test helpers for stage kinds: building a stage
// from an HCL snippet through its kind's own Spec, as the engine does. It
// is imported from _test.go files only.
package stagestest

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/pipeml/pipe/stages"
)

// Decode parses src as the body of a stage block, decodes it with def's
// Spec and builds the stage with def.New, failing t on any diagnostic.
func Decode(t testing.TB, def *stages.Definition, src string) stages.Stage {
	t.Helper()
	st, diags := TryDecode(def, src)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return st
}

// TryDecode is Decode that returns the diagnostics (of parsing, decoding
// or the kind's constructor) instead of failing, for tests of bad input.
func TryDecode(def *stages.Definition, src string) (stages.Stage, hcl.Diagnostics) {
	f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	v, diags := hcldec.Decode(f.Body, def.Spec, nil)
	if diags.HasErrors() {
		return nil, diags
	}
	return def.New(v)
}
