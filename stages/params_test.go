package stages

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

func TestParamSpecAndDoc(t *testing.T) {
	ps := []Param{
		NewParam("max_len", cty.Number, cty.NumberIntVal(1600), "Longest example."),
		NewParam("mode", cty.String, cty.StringVal("turn"), "Example mode."),
		NewParam("roles", cty.List(cty.String), StringList("user", "assistant"), "Roles."),
		NewParam("none", cty.List(cty.String), StringList(), "Empty."),
	}
	f, diags := hclsyntax.ParseConfig([]byte("mode = \"pair\"\n"), "x.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	v, diags := hcldec.Decode(f.Body, ParamSpec(ps), nil)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := v.GetAttr("mode").AsString(); got != "pair" {
		t.Errorf("mode = %q, want the set value", got)
	}
	if got, _ := v.GetAttr("max_len").AsBigFloat().Int64(); got != 1600 {
		t.Errorf("max_len = %d, want the default", got)
	}
	if n := v.GetAttr("none").LengthInt(); n != 0 {
		t.Errorf("none has %d elements", n)
	}
	doc := ParamDoc(ps)
	for _, want := range []string{
		"| `max_len` | number | `1600` | Longest example. |",
		"| `mode` | string | `\"turn\"` | Example mode. |",
		"| `roles` | list of string | `[\"user\", \"assistant\"]` | Roles. |",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("doc lacks %q:\n%s", want, doc)
		}
	}
}
