package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

func parse(t *testing.T, src string, opts Options) (*Pipeline, hcl.Diagnostics) {
	t.Helper()
	if opts.Getenv == nil {
		opts.Getenv = func(k string) (string, bool) {
			v, ok := map[string]string{"HOME_X": "/home/x", "PIPE_VAR_fromenv": "env!"}[k]
			return v, ok
		}
	}
	return Parse([]byte(src), filepath.Join(t.TempDir(), "pipeline.hcl"), opts)
}

func TestVariablePrecedence(t *testing.T) {
	dir := t.TempDir()
	varFile := filepath.Join(dir, "vars.hcl")
	os.WriteFile(varFile, []byte("n = 5\nname = \"file\"\n"), 0o644)
	src := `
variable "n" {
  type    = number
  default = 1
}
variable "name" {
  default = "default"
}
variable "fromenv" {
  type    = string
  default = "d"
}
variable "list" {
  type    = list(string)
  default = []
}
locals {
  twice = var.n * 2
  greet = format("%s-%s-%d", var.name, local.suffix, local.twice)
  suffix = env("HOME_X")
}
`
	p, diags := parse(t, src, Options{VarFiles: []string{varFile}, Vars: []string{"name=cli", `list=["a","b"]`}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	for name, want := range map[string]cty.Value{
		"n": cty.NumberIntVal(5), "name": cty.StringVal("cli"), "fromenv": cty.StringVal("env!"),
		"list": cty.ListVal([]cty.Value{cty.StringVal("a"), cty.StringVal("b")}),
	} {
		if got := p.Variables[name].Value; !got.RawEquals(want) {
			t.Errorf("var.%s = %#v, want %#v", name, got, want)
		}
	}
	if got := p.Locals["greet"]; !got.RawEquals(cty.StringVal("cli-/home/x-10")) {
		t.Errorf("local.greet = %#v", got)
	}
}

func TestVarErrors(t *testing.T) {
	src := `variable "n" {
  type    = number
  default = 1
}`
	for _, vars := range [][]string{{"m=1"}, {"n=abc"}, {"n"}} {
		_, diags := parse(t, src, Options{Vars: vars})
		if !diags.HasErrors() {
			t.Errorf("-var %v: no error", vars)
		}
	}
	_, diags := parse(t, src, Options{Vars: []string{"nn=1"}})
	if !strings.Contains(diags.Error(), `Did you mean "n"?`) {
		t.Errorf("no suggestion: %s", diags.Error())
	}
}

func TestGlob(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a.log", "b.txt", "sub/c.log", "sub/deep/d.log", ".hidden/e.log", "sub/.f.log"} {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o777)
		os.WriteFile(p, nil, 0o644)
	}
	for pattern, want := range map[string]string{
		"*.log":         "a.log",
		"**/*.log":      "a.log sub/c.log sub/deep/d.log",
		"sub/**":        "sub/c.log sub/deep sub/deep/d.log",
		"sub/*/*.log":   "sub/deep/d.log",
		"nothing/*.log": "",
		"b.txt":         "b.txt",
		".hidden/*":     ".hidden/e.log",
	} {
		got, err := Glob(dir, pattern)
		if err != nil {
			t.Errorf("%s: %v", pattern, err)
			continue
		}
		if g := strings.Join(got, " "); g != want {
			t.Errorf("glob(%q) = %q, want %q", pattern, g, want)
		}
	}
	if _, err := Glob(dir, "[unclosed"); err == nil {
		t.Error("bad pattern accepted")
	}
}

// FuzzParse: the front end never panics, and a file it rejects always
// says where.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`stage "command" "a" { program = "x" }`,
		`variable "v" { type = list(number) default = [1] }` + "\nlocals { x = var.v[0] + 1 }",
		`locals { a = local.b
b = local.a }`,
		`workspace { dir = ".x" parallelism = 3 }`,
		`stage "k" "n" { depends_on = [stage.k.m] }`,
		`stage "k" { }`,
		`variable "x" { type = map(string) }`,
		`locals { g = glob("**/*") f = file("nope") e = env("X", "d") }`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, diags := Parse([]byte(src), "fuzz.hcl", Options{Getenv: func(string) (string, bool) { return "", false }})
		if p == nil {
			t.Fatal("nil pipeline")
		}
		for _, d := range diags {
			if d.Severity == hcl.DiagError && d.Subject == nil && !strings.Contains(d.Summary, "variable") {
				t.Fatalf("error without a source range: %s: %s", d.Summary, d.Detail)
			}
		}
	})
}
