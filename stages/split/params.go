package split

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// param is one parameter of the stage: its schema, default and
// documentation in one place, so Spec and Doc cannot drift apart.
type param struct {
	name string
	typ  cty.Type
	def  cty.Value
	doc  string
}

func strList(ss ...string) cty.Value {
	if len(ss) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vs := make([]cty.Value, len(ss))
	for i, s := range ss {
		vs[i] = cty.StringVal(s)
	}
	return cty.ListVal(vs)
}

// specOf builds the hcldec spec of ps: every parameter is optional and
// takes its default when absent.
func specOf(ps []param) hcldec.ObjectSpec {
	spec := hcldec.ObjectSpec{}
	for _, p := range ps {
		spec[p.name] = &hcldec.DefaultSpec{
			Primary: &hcldec.AttrSpec{Name: p.name, Type: p.typ},
			Default: &hcldec.LiteralSpec{Value: p.def},
		}
	}
	return spec
}

// docOf renders the parameter table of ps in Markdown.
func docOf(ps []param) string {
	var b strings.Builder
	b.WriteString("| parameter | type | default | meaning |\n|---|---|---|---|\n")
	for _, p := range ps {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", p.name, p.typ.FriendlyName(), render(p.def), p.doc)
	}
	return b.String()
}

func render(v cty.Value) string {
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
			parts = append(parts, render(e))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return v.GoString()
}
