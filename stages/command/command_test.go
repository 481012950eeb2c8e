package command

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/pipeml/pipe/stages"
)

// build decodes an HCL snippet through def's spec and constructs the stage.
func build(t *testing.T, def *stages.Definition, src string) stages.Stage {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	spec := hcldec.ObjectSpec{}
	for k, v := range def.Spec {
		spec[k] = v
	}
	for _, in := range def.Inputs {
		spec[in.Name] = &hcldec.AttrSpec{Name: in.Name, Type: cty.List(cty.String)}
	}
	val, diags := hcldec.Decode(f.Body, spec, nil)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	// As the engine does: parameters go to New, inputs to Env.
	params := map[string]cty.Value{}
	for k := range def.Spec {
		params[k] = val.GetAttr(k)
	}
	st, diags := def.New(cty.ObjectVal(params))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return st
}

func newEnv(t *testing.T, inputs ...string) *stages.Env {
	dir := t.TempDir()
	env := &stages.Env{
		Stage: "test", WorkDir: dir, OutDir: filepath.Join(dir, "out"), TempDir: filepath.Join(dir, "tmp"),
		Parallelism: 2, Summary: map[string]any{}, Inputs: map[string]stages.Input{},
	}
	os.MkdirAll(env.OutDir, 0o777)
	os.MkdirAll(env.TempDir, 0o777)
	if len(inputs) > 0 {
		env.Inputs["inputs"] = stages.Input{Name: "inputs", Paths: inputs}
	}
	return env
}

func TestCommandOutputsAndEnvironment(t *testing.T) {
	t.Setenv("PIPE_TEST_SECRET", "leak")
	t.Setenv("PIPE_TEST_PASSED", "passed")
	st := build(t, Definition, `
program  = "sh"
args     = ["-c", "echo \"$GREETING $PIPE_TEST_SECRET $PIPE_TEST_PASSED\" > {out.text}; mkdir -p {out.dir}/a; echo x > $PIPE_OUT_dir/a/b"]
outputs  = { text = "file", dir = "dir" }
env      = { GREETING = "hello" }
pass_env = ["PIPE_TEST_PASSED"]
`)
	env := newEnv(t)
	if err := st.Run(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(env.OutputPath("text"))
	if got, want := string(b), "hello  passed\n"; got != want {
		t.Errorf("text = %q, want %q (undeclared variables must not leak)", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(env.OutputPath("dir"), "a/b")); string(b) != "x\n" {
		t.Errorf("dir/a/b = %q", b)
	}
	parts, err := st.(stages.Keyer).KeyParts(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	if parts["program sh"] == "" || parts["environment variable PIPE_TEST_PASSED"] != "passed" {
		t.Errorf("key parts = %v", parts)
	}
	if got := outputsOf(mustDecode(t, `program = "x"
outputs = { b = "dir", a = "file" }`)); len(got) != 2 || got[0].Name != "a" || got[1].Kind != stages.Dir {
		t.Errorf("outputsOf = %+v", got)
	}
}

func mustDecode(t *testing.T, src string) cty.Value {
	f, _ := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
	v, diags := hcldec.Decode(f.Body, Definition.Spec, nil)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return v
}

func TestCommandFailureShowsTail(t *testing.T) {
	st := build(t, Definition, `
program = "sh"
args    = ["-c", "for i in $(seq 100); do echo line $i; done; echo oops >&2; exit 3"]
outputs = { x = "file" }
`)
	err := st.Run(t.Context(), newEnv(t))
	var diags hcl.Diagnostics
	if !errors.As(err, &diags) {
		t.Fatalf("error %v is not diagnostics", err)
	}
	d := diags[0].Detail
	if !strings.Contains(d, "exit status 3") || !strings.Contains(d, "oops") || !strings.Contains(d, "line 100") || strings.Contains(d, "line 1\n") {
		t.Errorf("detail lacks the bounded output tail:\n%s", d)
	}
}

// TestCommandFailureEscapedChild: a child that left the process group
// keeps the output pipe open; the stage still returns, with the output.
func TestCommandFailureEscapedChild(t *testing.T) {
	st := build(t, Definition, `
program = "sh"
args    = ["-c", "setsid sh -c 'echo escaped; exec sleep 8' & sleep 1; exit 3"]
outputs = { x = "file" }
`)
	start := time.Now()
	err := st.Run(t.Context(), newEnv(t))
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("the stage waited %v for a child outside its process group", took)
	}
	var diags hcl.Diagnostics
	if !errors.As(err, &diags) || !strings.Contains(diags[0].Detail, "escaped") || !strings.Contains(diags[0].Detail, "exit status 3") {
		t.Errorf("error %v lacks the exit status or the output", err)
	}
}

func TestCommandCancel(t *testing.T) {
	st := build(t, Definition, `
program    = "sh"
args       = ["-c", "trap 'exit 0' TERM; sleep 30 & wait"]
outputs    = { x = "file" }
kill_grace = "2s"
`)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	err := st.Run(ctx, newEnv(t))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancel took %s", d)
	}
}

func TestCommandRejectsBadConfig(t *testing.T) {
	for _, src := range []string{
		`program = "x"
outputs = {}`,
		`program = "x"
outputs = { "bad name" = "file" }`,
		`program = "x"
outputs = { a = "folder" }`,
		`program = "x"
outputs = { a = "file" }
timeout = "soon"`,
	} {
		f, _ := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
		v, diags := hcldec.Decode(f.Body, Definition.Spec, nil)
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		if _, diags := Definition.New(v); !diags.HasErrors() {
			t.Errorf("accepted:\n%s", src)
		}
	}
}

func TestEachMapsEveryFile(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"b.txt", "a.txt", "sub/c.txt"} {
		p := filepath.Join(dir, "in", f)
		os.MkdirAll(filepath.Dir(p), 0o777)
		os.WriteFile(p, []byte(f+"\n"), 0o644)
	}
	st := build(t, EachDefinition, `
program = "sh"
args    = ["-c", "printf '%s: ' \"$1\"; cat \"$2\"", "each", "{key}", "{in}"]
`)
	env := newEnv(t, filepath.Join(dir, "in"))
	env.WorkDir = dir
	if err := st.Run(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(env.OutputPath("out"))
	want := "in/a.txt: a.txt\nin/b.txt: b.txt\nin/sub/c.txt: sub/c.txt\n"
	if string(b) != want {
		t.Errorf("out = %q, want %q", b, want)
	}
	if env.Summary["files"] != 3 {
		t.Errorf("summary = %v", env.Summary)
	}
}
