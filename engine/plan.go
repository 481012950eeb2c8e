package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dominikbraun/graph"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/pipeml/pipe/engine/config"
	"github.com/pipeml/pipe/stages"
	"github.com/zclconf/go-cty/cty"
)

// Node is one planned stage.
type Node struct {
	Config *config.Stage
	Def    *stages.Definition
	Stage  stages.Stage
	// Name is the stage's label, unique in the pipeline.
	Name string
	// Params is the decoded value of the kind's Spec; ParamsJSON holds each
	// top-level parameter in canonical JSON (object keys sorted).
	Params     cty.Value
	ParamsJSON map[string][]byte
	// Inputs are the input attributes that were set, in the kind's order.
	Inputs []*NodeInput
	// Outputs are the stage's outputs.
	Outputs []stages.OutputSpec
	// Deps are the names of the stages this one depends on, sorted.
	Deps []string
	// Refs are the upstream outputs the stage's body refers to
	// ("<stage>.<output>"), sorted.
	Refs []string
	// Index is the stage's position in the file.
	Index int
}

// NodeInput is one input attribute with its paths: absolute, globs
// expanded (in order), as the stage will see them.
type NodeInput struct {
	Name  string
	Paths []string
	Range hcl.Range
	// Deferred is set when a path is a glob inside another stage's
	// output: it is expanded when the stage runs.
	Deferred bool
}

// Plan is a decoded, checked pipeline: its stages and the graph between
// them. It is read-only once built and may be run several times.
type Plan struct {
	Pipeline *config.Pipeline
	// Root is the project folder; relative paths are resolved against it.
	Root      string
	Workspace *Workspace
	Nodes     map[string]*Node
	// Order lists every stage in a stable topological order (file order
	// among independent stages).
	Order []string
	Graph graph.Graph[string, string]
}

// NewPlan decodes the stages of p with the kinds in reg and builds the
// graph. Outputs are materialised in ws.
func NewPlan(p *config.Pipeline, reg *stages.Registry, ws *Workspace) (*Plan, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	pl := &Plan{
		Pipeline: p, Root: p.Dir, Workspace: ws, Nodes: map[string]*Node{},
		Graph: graph.New(graph.StringHash, graph.Directed(), graph.PreventCycles()),
	}
	type pending struct {
		node  *Node
		spec  hcldec.ObjectSpec
		trav  []hcl.Traversal
		attrs hclsyntax.Attributes
	}
	var nodes []*pending
	byName := map[string]*pending{}
	for i, s := range p.Stages {
		def, ok := reg.Lookup(s.Kind)
		if !ok {
			detail := fmt.Sprintf("There is no stage kind %q.", s.Kind)
			if sug := config.DidYouMean(s.Kind, reg.Names()); sug != "" {
				detail += fmt.Sprintf(" Did you mean %q?", sug)
			}
			detail += " Run `pipe stages` for the list of kinds."
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Unknown stage kind", Detail: detail, Subject: s.TypeRange.Ptr(),
			})
			continue
		}
		spec, d := fullSpec(def, s)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		n := &Node{Config: s, Def: def, Name: s.Name, Index: i}
		pd := &pending{node: n, spec: spec}
		pd.trav = append(pd.trav, hcldec.Variables(s.Body, spec)...)
		pd.trav = append(pd.trav, s.DependsOn...)
		if sb, ok := s.Body.(*hclsyntax.Body); ok {
			pd.attrs = sb.Attributes
		}
		nodes = append(nodes, pd)
		byName[s.Name] = pd
		pl.Graph.AddVertex(s.Name)
	}
	allNames := make([]string, 0, len(p.Stages))
	for _, s := range p.Stages {
		allNames = append(allNames, s.Name)
	}
	// Edges from references.
	cyclic := false
	for _, pd := range nodes {
		deps := map[string]bool{}
		for _, t := range pd.trav {
			if t.RootName() != "stage" {
				continue
			}
			name, _, d := stageRef(t, p, allNames)
			diags = append(diags, d...)
			if name == "" || byName[name] == nil {
				continue
			}
			if name == pd.node.Name {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Stage refers to itself",
					Detail:   fmt.Sprintf("Stage %q cannot use its own outputs.", name),
					Subject:  t.SourceRange().Ptr(),
				})
				continue
			}
			if deps[name] {
				continue
			}
			deps[name] = true
			err := pl.Graph.AddEdge(name, pd.node.Name)
			if err == graph.ErrEdgeCreatesCycle {
				cyclic = true
				path, _ := graph.ShortestPath(pl.Graph, pd.node.Name, name)
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Dependency cycle",
					Detail:   fmt.Sprintf("The stages %s depend on each other in a cycle (%s). Remove one of these references.", strings.Join(sortedCopy(path), ", "), cycleString(path)),
					Subject:  t.SourceRange().Ptr(),
				})
				continue
			}
			pd.node.Deps = append(pd.node.Deps, name)
		}
		sort.Strings(pd.node.Deps)
	}
	if cyclic {
		return pl, diags
	}
	order, err := graph.StableTopologicalSort(pl.Graph, func(a, b string) bool {
		return byName[a].node.Index < byName[b].node.Index
	})
	if err != nil {
		return pl, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot order stages", Detail: err.Error()})
	}
	pl.Order = order

	// Decode bodies in dependency order, so that references to a stage's
	// outputs can be checked against its (possibly declared) outputs.
	base := p.EvalContext(nil)
	stageObj := map[string]map[string]cty.Value{} // kind -> name -> outputs object
	for _, name := range order {
		pd := byName[name]
		if pd == nil {
			continue
		}
		n := pd.node
		refsOK := true
		for _, t := range pd.trav {
			if t.RootName() != "stage" {
				continue
			}
			up, out, d := stageRef(t, p, allNames)
			if d.HasErrors() || byName[up] == nil {
				refsOK = false // reported above
				continue
			}
			if pl.Nodes[up] == nil {
				refsOK = false // the upstream stage has errors of its own
				continue
			}
			if out == "" {
				continue
			}
			un := byName[up].node
			found := false
			var names []string
			for _, o := range un.Outputs {
				names = append(names, o.Name)
				found = found || o.Name == out
			}
			if !found {
				refsOK = false
				detail := fmt.Sprintf("Stage %q (kind %s) has no output %q.", up, un.Def.Name, out)
				if sug := config.DidYouMean(out, names); sug != "" {
					detail += fmt.Sprintf(" Did you mean %q?", sug)
				} else if len(names) > 0 {
					detail += fmt.Sprintf(" Its outputs are: %s.", strings.Join(names, ", "))
				}
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError, Summary: "Unknown stage output", Detail: detail, Subject: t.SourceRange().Ptr(),
				})
				continue
			}
			n.Refs = append(n.Refs, up+"."+out)
		}
		n.Refs = dedupSorted(n.Refs)
		if !refsOK {
			continue
		}
		ctx := base.NewChild()
		kinds := map[string]cty.Value{}
		for k, m := range stageObj {
			kinds[k] = cty.ObjectVal(m)
		}
		ctx.Variables = map[string]cty.Value{"stage": cty.ObjectVal(kinds)}
		val, d := hcldec.Decode(n.Config.Body, pd.spec, ctx)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		if !val.IsWhollyKnown() {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Unknown value",
				Detail:  "The stage's settings depend on a value that is not known before the run.",
				Subject: n.Config.DeclRange.Ptr(),
			})
			continue
		}
		params := map[string]cty.Value{}
		n.ParamsJSON = map[string][]byte{}
		for k := range n.Def.Spec {
			v := val.GetAttr(k)
			params[k] = v
			b, err := ctyjson.Marshal(v, v.Type())
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot encode parameter", Detail: fmt.Sprintf("Parameter %q: %v.", k, err), Subject: n.Config.DeclRange.Ptr()})
				continue
			}
			n.ParamsJSON[k] = b
		}
		n.Params = cty.ObjectVal(params)
		if len(params) == 0 {
			n.Params = cty.EmptyObjectVal
		}
		for _, in := range n.Def.Inputs {
			v := val.GetAttr(in.Name)
			if v.IsNull() {
				continue
			}
			rng := n.Config.DeclRange
			if a, ok := pd.attrs[in.Name]; ok {
				rng = a.Expr.Range()
			}
			ni, d := pl.resolveInput(in, v, rng)
			diags = append(diags, d...)
			if ni != nil {
				n.Inputs = append(n.Inputs, ni)
			}
		}
		if n.Def.OutputsOf != nil {
			n.Outputs = n.Def.OutputsOf(n.Params)
		} else {
			n.Outputs = n.Def.Outputs
		}
		st, d := n.Def.New(n.Params)
		placeDiagnostics(d, n.Config.Body, n.Config.DeclRange)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		if st == nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Stage kind returned no stage", Detail: fmt.Sprintf("Kind %q built no stage; this is a bug in the kind.", n.Def.Name), Subject: n.Config.DeclRange.Ptr()})
			continue
		}
		n.Stage = st
		outs := map[string]cty.Value{}
		for _, o := range n.Outputs {
			outs[o.Name] = cty.StringVal(pl.refPath(n.Name, o.Name))
		}
		if stageObj[n.Def.Name] == nil {
			stageObj[n.Def.Name] = map[string]cty.Value{}
		}
		stageObj[n.Def.Name][n.Name] = cty.ObjectVal(outs)
		if len(outs) == 0 {
			stageObj[n.Def.Name][n.Name] = cty.EmptyObjectVal
		}
		pl.Nodes[n.Name] = n
	}
	return pl, diags
}

// refPath is the value of a reference to an output: its materialised
// path, relative to the project folder when the workspace is inside it,
// so that moving the project does not change parameters.
func (pl *Plan) refPath(stage, output string) string {
	p := pl.Workspace.OutPath(stage, output)
	if rel, err := filepath.Rel(pl.Root, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

// abs resolves a path of the pipeline against the project folder.
func (pl *Plan) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(pl.Root, p)
}

// resolveInput expands globs and checks that every path exists (or will
// be written by a stage).
func (pl *Plan) resolveInput(in stages.InputSpec, v cty.Value, rng hcl.Range) (*NodeInput, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	ni := &NodeInput{Name: in.Name, Range: rng}
	var raw []string
	if v.Type() == cty.String {
		raw = []string{v.AsString()}
	} else {
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.IsNull() {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Null input path", Detail: fmt.Sprintf("Input %q contains a null path.", in.Name), Subject: rng.Ptr()})
				continue
			}
			raw = append(raw, e.AsString())
		}
	}
	outRoot := filepath.Join(pl.Workspace.Dir, "out") + string(filepath.Separator)
	for _, r := range raw {
		if r == "" {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Empty input path", Detail: fmt.Sprintf("Input %q contains an empty path.", in.Name), Subject: rng.Ptr()})
			continue
		}
		p := pl.abs(r)
		if strings.HasPrefix(p, outRoot) {
			// Written by a stage before this one runs; a glob there is
			// expanded then.
			ni.Paths = append(ni.Paths, p)
			ni.Deferred = ni.Deferred || strings.ContainsAny(p, "*?[")
			continue
		}
		if strings.ContainsAny(r, "*?[") {
			matches, err := config.Glob(pl.Root, r)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid glob", Detail: fmt.Sprintf("Input %q: %v.", in.Name, err), Subject: rng.Ptr()})
				continue
			}
			if len(matches) == 0 {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Input glob matches nothing", Detail: fmt.Sprintf("Input %q: no file matches %q (relative to %s).", in.Name, r, pl.Root), Subject: rng.Ptr()})
				continue
			}
			for _, m := range matches {
				ni.Paths = append(ni.Paths, pl.abs(m))
			}
			continue
		}
		if _, err := os.Stat(p); err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing input path", Detail: fmt.Sprintf("Input %q: %s does not exist. Create it or fix the path (relative paths are relative to %s).", in.Name, r, pl.Root), Subject: rng.Ptr()})
			continue
		}
		ni.Paths = append(ni.Paths, p)
	}
	return ni, diags
}

// fullSpec is the kind's parameter spec plus one attribute per input.
func fullSpec(def *stages.Definition, s *config.Stage) (hcldec.ObjectSpec, hcl.Diagnostics) {
	spec := hcldec.ObjectSpec{}
	for k, v := range def.Spec {
		spec[k] = v
	}
	for _, in := range def.Inputs {
		if _, dup := spec[in.Name]; dup || in.Name == "depends_on" {
			return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid stage kind", Detail: fmt.Sprintf("Kind %q declares %q both as a parameter and an input; this is a bug in the kind.", def.Name, in.Name), Subject: s.TypeRange.Ptr()}}
		}
		t := cty.String
		if in.List {
			t = cty.List(cty.String)
		}
		spec[in.Name] = &hcldec.AttrSpec{Name: in.Name, Type: t, Required: in.Required}
	}
	return spec, nil
}

// stageRef checks a traversal rooted at "stage" and returns the stage name
// and the output name (empty when the reference is to a whole stage).
func stageRef(t hcl.Traversal, p *config.Pipeline, names []string) (string, string, hcl.Diagnostics) {
	attr := func(i int) (string, bool) {
		if i >= len(t) {
			return "", false
		}
		switch s := t[i].(type) {
		case hcl.TraverseAttr:
			return s.Name, true
		case hcl.TraverseIndex:
			if s.Key.Type() == cty.String {
				return s.Key.AsString(), true
			}
		}
		return "", false
	}
	kind, ok1 := attr(1)
	name, ok2 := attr(2)
	if !ok1 || !ok2 {
		return "", "", hcl.Diagnostics{{
			Severity: hcl.DiagError, Summary: "Invalid stage reference",
			Detail:  "A stage reference has the form stage.<kind>.<name>.<output>, or stage.<kind>.<name> in depends_on.",
			Subject: t.SourceRange().Ptr(),
		}}
	}
	for _, s := range p.Stages {
		if s.Name == name {
			if s.Kind != kind {
				return "", "", hcl.Diagnostics{{
					Severity: hcl.DiagError, Summary: "Reference to undeclared stage",
					Detail:  fmt.Sprintf("Stage %q is of kind %q, not %q: write stage.%s.%s.", name, s.Kind, kind, s.Kind, name),
					Subject: t.SourceRange().Ptr(),
				}}
			}
			out, _ := attr(3)
			return name, out, nil
		}
	}
	detail := fmt.Sprintf("No stage named %q is declared in the pipeline.", name)
	if sug := config.DidYouMean(name, names); sug != "" {
		detail += fmt.Sprintf(" Did you mean %q?", sug)
	}
	return "", "", hcl.Diagnostics{{
		Severity: hcl.DiagError, Summary: "Reference to undeclared stage", Detail: detail, Subject: t.SourceRange().Ptr(),
	}}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

// cycleString writes the cycle through path (from a stage to one it
// depends on, closing the loop) starting at its smallest name.
func cycleString(path []string) string {
	if len(path) == 0 {
		return ""
	}
	// path runs along dependency edges: path[0] feeds path[1] ...; the new
	// edge closes it back to path[0].
	start := 0
	for i, s := range path {
		if s < path[start] {
			start = i
		}
	}
	var b strings.Builder
	for i := 0; i <= len(path); i++ {
		if i > 0 {
			b.WriteString(" → ")
		}
		b.WriteString(path[(start+i)%len(path)])
	}
	return b.String()
}

func dedupSorted(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// Select returns targets and every stage upstream of them, in plan order.
// No targets means every stage. Unknown names are an error.
func (pl *Plan) Select(targets []string) ([]string, error) {
	if len(targets) == 0 {
		return pl.Order, nil
	}
	want := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if want[n] {
			return
		}
		want[n] = true
		for _, d := range pl.Nodes[n].Deps {
			visit(d)
		}
	}
	for _, t := range targets {
		if pl.Nodes[t] == nil {
			names := make([]string, 0, len(pl.Order))
			names = append(names, pl.Order...)
			msg := fmt.Sprintf("no stage named %q", t)
			if s := config.DidYouMean(t, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return nil, fmt.Errorf("%s", msg)
		}
		visit(t)
	}
	var out []string
	for _, n := range pl.Order {
		if want[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// placeDiagnostics gives a source range to the diagnostics a kind's
// constructor returned without one (kinds see decoded values, not source):
// the attribute of the stage block that the summary (else the detail)
// names, else the block itself, so every error points at a file and line.
func placeDiagnostics(diags hcl.Diagnostics, body hcl.Body, block hcl.Range) {
	sb, _ := body.(*hclsyntax.Body)
	for _, d := range diags {
		if d.Subject != nil {
			continue
		}
		var best *hclsyntax.Attribute
		if sb != nil {
			for _, text := range []string{d.Summary, d.Detail} {
				for name, a := range sb.Attributes {
					if mentions(text, name) && (best == nil || len(name) > len(best.Name)) {
						best = a
					}
				}
				if best != nil {
					break
				}
			}
		}
		if best != nil {
			d.Subject = best.SrcRange.Ptr()
		} else {
			d.Subject = block.Ptr()
		}
	}
}

// mentions reports whether text names the attribute name as a whole word.
func mentions(text, name string) bool {
	for i := 0; ; {
		j := strings.Index(text[i:], name)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(name)
		before := j == 0 || !isWordByte(text[j-1])
		after := end == len(text) || !isWordByte(text[end])
		if before && after {
			return true
		}
		i = j + 1
	}
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
