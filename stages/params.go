package stages

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Param is one optional parameter of a stage kind: its schema, default and
// documentation in one place, so that a kind's Spec and the parameter table
// in its Doc cannot drift apart.
type Param struct {
	Name    string
	Type    cty.Type
	Default cty.Value
	Doc     string
}

// NewParam returns a Param; kinds list their parameters one per line as
//
//	param("max_len", cty.Number, cty.NumberIntVal(1600), "Longest example, in tokens."),
//
// with `var param = stages.NewParam`.
func NewParam(name string, typ cty.Type, def cty.Value, doc string) Param {
	return Param{Name: name, Type: typ, Default: def, Doc: doc}
}

// ParamSpec builds the hcldec spec of ps: every parameter is optional and
// takes its default when absent.
func ParamSpec(ps []Param) hcldec.ObjectSpec {
	spec := hcldec.ObjectSpec{}
	for _, p := range ps {
		spec[p.Name] = &hcldec.DefaultSpec{
			Primary: &hcldec.AttrSpec{Name: p.Name, Type: p.Type},
			Default: &hcldec.LiteralSpec{Value: p.Default},
		}
	}
	return spec
}

// ParamDoc renders the parameter table of ps in Markdown.
func ParamDoc(ps []Param) string {
	var b strings.Builder
	b.WriteString("| parameter | type | default | meaning |\n|---|---|---|---|\n")
	for _, p := range ps {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", p.Name, p.Type.FriendlyName(), renderValue(p.Default), p.Doc)
	}
	return b.String()
}

// StringList is a cty list of strings (an empty list of strings for none).
func StringList(ss ...string) cty.Value {
	if len(ss) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vs := make([]cty.Value, len(ss))
	for i, s := range ss {
		vs[i] = cty.StringVal(s)
	}
	return cty.ListVal(vs)
}

// renderValue writes a default as HCL would.
func renderValue(v cty.Value) string {
	switch {
	case v.Type() == cty.String:
		return fmt.Sprintf("%q", v.AsString())
	case v.Type() == cty.Number:
		return v.AsBigFloat().Text('g', -1)
	case v.Type() == cty.Bool:
		return fmt.Sprint(v.True())
	case v.Type().IsListType():
		var parts []string
		for _, e := range v.AsValueSlice() {
			parts = append(parts, renderValue(e))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return v.GoString()
}
