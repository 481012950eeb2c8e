package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// DefaultWorkspace is the workspace folder, relative to the pipeline
// file, when the file does not name one.
const DefaultWorkspace = ".pipe"

// Pipeline is a decoded pipeline.hcl.
type Pipeline struct {
	// Filename is the path of the main file; Dir its folder, against which
	// relative paths in the file are resolved.
	Filename, Dir string
	// Stages in file order.
	Stages []*Stage
	// Variables by name, with their final values.
	Variables map[string]*Variable
	// Locals holds the evaluated locals.
	Locals map[string]cty.Value
	// Workspace settings.
	Workspace Workspace
	// Parser holds every file read, for rendering diagnostics.
	Parser *hclparse.Parser
}

// Files returns the sources of every file read, for
// hcl.NewDiagnosticTextWriter.
func (p *Pipeline) Files() map[string]*hcl.File { return p.Parser.Files() }

// Stage is one `stage "<kind>" "<name>"` block, decoded only as far as its
// meta-arguments.
type Stage struct {
	Kind, Name string
	// DependsOn lists explicit dependencies (stage.<kind>.<name>).
	DependsOn []hcl.Traversal
	// Body is everything else, decoded by the engine with the kind's spec.
	Body hcl.Body
	// DeclRange covers `stage "kind" "name"`; TypeRange the kind label;
	// NameRange the name label.
	DeclRange, TypeRange, NameRange hcl.Range
}

// Variable is a `variable "<name>"` block and its final value.
type Variable struct {
	Name        string
	Type        cty.Type
	Description string
	Default     cty.Value
	Value       cty.Value
	DeclRange   hcl.Range
}

// Workspace holds the settings of the optional `workspace` block.
type Workspace struct {
	// Dir is the workspace folder (cache, run records, outputs), relative
	// to the pipeline file unless absolute.
	Dir string
	// Parallelism, if positive, is the default of -j.
	Parallelism int
}

// Options are the command-line inputs of Load.
type Options struct {
	// Vars are -var arguments, "name=value", applied in order after
	// VarFiles.
	Vars []string
	// VarFiles are -var-file paths.
	VarFiles []string
	// Getenv reads environment variables (env() and PIPE_VAR_<name>);
	// nil means os.LookupEnv.
	Getenv func(string) (string, bool)
}

var fileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "stage", LabelNames: []string{"kind", "name"}},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "workspace"},
	},
}

var stageMetaSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "depends_on"}},
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"},
		{Name: "default"},
		{Name: "description"},
	},
}

var workspaceSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "dir"},
		{Name: "parallelism"},
	},
}

// Load reads the pipeline file at path.
func Load(path string, opts Options) (*Pipeline, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read pipeline file",
			Detail:   fmt.Sprintf("%v. Run pipe in the folder that holds pipeline.hcl, or pass -f <file>.", err),
		}}
	}
	return Parse(src, path, opts)
}

// Parse decodes src as the pipeline file filename.
func Parse(src []byte, filename string, opts Options) (*Pipeline, hcl.Diagnostics) {
	if opts.Getenv == nil {
		opts.Getenv = os.LookupEnv
	}
	dir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		dir = filepath.Dir(filename)
	}
	p := &Pipeline{
		Filename:  filename,
		Dir:       dir,
		Variables: map[string]*Variable{},
		Locals:    map[string]cty.Value{},
		Workspace: Workspace{Dir: DefaultWorkspace},
		Parser:    hclparse.NewParser(),
	}
	f, diags := p.Parser.ParseHCL(src, filename)
	if diags.HasErrors() {
		return p, diags
	}
	content, d := f.Body.Content(fileSchema)
	diags = append(diags, d...)

	var localBlocks, wsBlocks []*hcl.Block
	seenStage := map[string]*Stage{}
	for _, b := range content.Blocks {
		switch b.Type {
		case "variable":
			v, d := decodeVariable(b)
			diags = append(diags, d...)
			if v == nil {
				continue
			}
			if old, dup := p.Variables[v.Name]; dup {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Duplicate variable",
					Detail:   fmt.Sprintf("Variable %q was already declared at %s. Give each variable a unique name.", v.Name, old.DeclRange),
					Subject:  b.LabelRanges[0].Ptr(),
				})
				continue
			}
			p.Variables[v.Name] = v
		case "locals":
			localBlocks = append(localBlocks, b)
		case "workspace":
			wsBlocks = append(wsBlocks, b)
		case "stage":
			s, d := decodeStage(b)
			diags = append(diags, d...)
			if s == nil {
				continue
			}
			if old, dup := seenStage[s.Name]; dup {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Duplicate stage name",
					Detail:   fmt.Sprintf("A stage named %q is already declared at %s. Stage names must be unique, whatever their kind.", s.Name, old.DeclRange),
					Subject:  s.NameRange.Ptr(),
				})
				continue
			}
			seenStage[s.Name] = s
			p.Stages = append(p.Stages, s)
		}
	}

	// Variables that have no valid value are unknown from here on, so that
	// locals and the workspace are still checked and every error reported.
	diags = append(diags, p.assignVariables(opts)...)
	diags = append(diags, p.evalLocals(localBlocks, opts)...)
	if len(wsBlocks) > 1 {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Duplicate workspace block",
			Detail:   fmt.Sprintf("Only one workspace block is allowed; the first is at %s.", wsBlocks[0].DefRange),
			Subject:  wsBlocks[1].DefRange.Ptr(),
		})
	}
	if len(wsBlocks) > 0 {
		diags = append(diags, p.decodeWorkspace(wsBlocks[0], opts)...)
	}
	return p, diags
}

func validName(s string) bool {
	return hclsyntax.ValidIdentifier(s)
}

func decodeStage(b *hcl.Block) (*Stage, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	s := &Stage{
		Kind: b.Labels[0], Name: b.Labels[1],
		DeclRange: hcl.RangeBetween(b.DefRange, b.LabelRanges[1]),
		TypeRange: b.LabelRanges[0], NameRange: b.LabelRanges[1],
	}
	s.DeclRange = b.DefRange
	for i, l := range b.Labels {
		if !validName(l) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid stage label",
				Detail:   fmt.Sprintf("%q is not a valid name: use letters, digits, underscores and dashes, starting with a letter.", l),
				Subject:  b.LabelRanges[i].Ptr(),
			})
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	content, rest, d := b.Body.PartialContent(stageMetaSchema)
	diags = append(diags, d...)
	s.Body = rest
	if a, ok := content.Attributes["depends_on"]; ok {
		exprs, d := hcl.ExprList(a.Expr)
		diags = append(diags, d...)
		for _, e := range exprs {
			t, d := hcl.AbsTraversalForExpr(e)
			if d.HasErrors() {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid depends_on reference",
					Detail:   "Each element of depends_on must be a stage reference such as stage.command.prepare.",
					Subject:  e.Range().Ptr(),
				})
				continue
			}
			s.DependsOn = append(s.DependsOn, t)
		}
	}
	return s, diags
}

func decodeVariable(b *hcl.Block) (*Variable, hcl.Diagnostics) {
	v := &Variable{Name: b.Labels[0], Type: cty.DynamicPseudoType, DeclRange: b.DefRange}
	if !validName(v.Name) {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid variable name",
			Detail:   fmt.Sprintf("%q is not a valid name: use letters, digits, underscores and dashes, starting with a letter.", v.Name),
			Subject:  b.LabelRanges[0].Ptr(),
		}}
	}
	content, diags := b.Body.Content(variableSchema)
	if a, ok := content.Attributes["type"]; ok {
		t, d := typeexpr.TypeConstraint(a.Expr)
		diags = append(diags, d...)
		if !d.HasErrors() {
			v.Type = t
		}
	}
	if a, ok := content.Attributes["description"]; ok {
		val, d := a.Expr.Value(nil)
		diags = append(diags, d...)
		if !d.HasErrors() && val.Type() == cty.String && val.IsKnown() && !val.IsNull() {
			v.Description = val.AsString()
		}
	}
	if a, ok := content.Attributes["default"]; ok {
		val, d := a.Expr.Value(nil)
		diags = append(diags, d...)
		if !d.HasErrors() {
			cv, err := convert.Convert(val, v.Type)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid default value",
					Detail:   fmt.Sprintf("The default of variable %q does not match its type %s: %v.", v.Name, typeexpr.TypeString(v.Type), err),
					Subject:  a.Expr.Range().Ptr(),
				})
				v.Default = cty.DynamicVal
			} else {
				v.Default = cv
			}
		}
	}
	return v, diags
}

// assignVariables sets every variable's value from, in increasing
// precedence, its default, PIPE_VAR_<name>, -var-file files and -var.
func (p *Pipeline) assignVariables(opts Options) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, v := range p.Variables {
		v.Value = v.Default
		if s, ok := opts.Getenv("PIPE_VAR_" + v.Name); ok {
			val, d := parseVarValue(v, s, "PIPE_VAR_"+v.Name)
			diags = append(diags, d...)
			if !d.HasErrors() {
				v.Value = val
			}
		}
	}
	for _, vf := range opts.VarFiles {
		src, err := os.ReadFile(vf)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cannot read variable file",
				Detail:   fmt.Sprintf("%v.", err),
			})
			continue
		}
		f, d := p.Parser.ParseHCL(src, vf)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		attrs, d := f.Body.JustAttributes()
		diags = append(diags, d...)
		names := make([]string, 0, len(attrs))
		for n := range attrs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			a := attrs[n]
			v, ok := p.Variables[n]
			if !ok {
				diags = append(diags, undeclaredVariable(n, p.Variables, a.NameRange.Ptr()))
				continue
			}
			val, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			if d.HasErrors() {
				continue
			}
			cv, err := convert.Convert(val, v.Type)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid value for variable",
					Detail:   fmt.Sprintf("Variable %q must be of type %s: %v.", n, typeexpr.TypeString(v.Type), err),
					Subject:  a.Expr.Range().Ptr(),
				})
				continue
			}
			v.Value = cv
		}
	}
	for _, kv := range opts.Vars {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid -var option",
				Detail:   fmt.Sprintf("The option -var %q has no '='; write -var name=value.", kv),
			})
			continue
		}
		v, ok := p.Variables[name]
		if !ok {
			diags = append(diags, undeclaredVariable(name, p.Variables, nil))
			continue
		}
		val, d := parseVarValue(v, value, "-var "+name)
		diags = append(diags, d...)
		if !d.HasErrors() {
			v.Value = val
		}
	}
	names := make([]string, 0, len(p.Variables))
	for n := range p.Variables {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := p.Variables[n]
		if v.Value == cty.NilVal {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "No value for required variable",
				Detail:   fmt.Sprintf("Variable %q has no default: set it with -var %s=<value>, a -var-file, or PIPE_VAR_%s.", n, n, n),
				Subject:  v.DeclRange.Ptr(),
			})
			v.Value = cty.DynamicVal
		}
	}
	return diags
}

func undeclaredVariable(name string, vars map[string]*Variable, subject *hcl.Range) *hcl.Diagnostic {
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	detail := fmt.Sprintf("No variable %q is declared in the pipeline.", name)
	if s := DidYouMean(name, names); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	}
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Undeclared variable", Detail: detail, Subject: subject}
}

// parseVarValue reads a value given on the command line or in the
// environment: taken literally for string and untyped variables, as an HCL
// expression otherwise.
func parseVarValue(v *Variable, s, what string) (cty.Value, hcl.Diagnostics) {
	if v.Type == cty.String || v.Type == cty.DynamicPseudoType {
		return cty.StringVal(s), nil
	}
	expr, diags := hclsyntax.ParseExpression([]byte(s), what, hcl.Pos{Line: 1, Column: 1, Byte: 0})
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	val, diags := expr.Value(nil)
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	cv, err := convert.Convert(val, v.Type)
	if err != nil {
		return cty.NilVal, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid value for variable",
			Detail:   fmt.Sprintf("%s: variable %q must be of type %s: %v.", what, v.Name, typeexpr.TypeString(v.Type), err),
		}}
	}
	return cv, nil
}

// evalLocals evaluates locals in dependency order; a local may refer to
// variables and to other locals.
func (p *Pipeline) evalLocals(blocks []*hcl.Block, opts Options) hcl.Diagnostics {
	var diags hcl.Diagnostics
	pending := map[string]*hcl.Attribute{}
	for _, b := range blocks {
		attrs, d := b.Body.JustAttributes()
		diags = append(diags, d...)
		for n, a := range attrs {
			if old, dup := pending[n]; dup {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Duplicate local value",
					Detail:   fmt.Sprintf("Local %q was already defined at %s.", n, old.NameRange),
					Subject:  a.NameRange.Ptr(),
				})
				continue
			}
			pending[n] = a
		}
	}
	for len(pending) > 0 {
		progress := false
		names := make([]string, 0, len(pending))
		for n := range pending {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			a := pending[n]
			ready := true
			for _, t := range a.Expr.Variables() {
				if t.RootName() != "local" || len(t) < 2 {
					continue
				}
				if ga, ok := t[1].(hcl.TraverseAttr); ok {
					if _, waiting := pending[ga.Name]; waiting {
						ready = false
					}
				}
			}
			if !ready {
				continue
			}
			val, d := a.Expr.Value(p.EvalContext(opts.Getenv))
			diags = append(diags, d...)
			if d.HasErrors() {
				val = cty.DynamicVal
			}
			p.Locals[n] = val
			delete(pending, n)
			progress = true
		}
		if !progress {
			names := make([]string, 0, len(pending))
			for n := range pending {
				names = append(names, n)
			}
			sort.Strings(names)
			a := pending[names[0]]
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Cycle in local values",
				Detail:   fmt.Sprintf("The locals %s refer to each other in a cycle; break it.", strings.Join(names, ", ")),
				Subject:  a.Expr.Range().Ptr(),
			})
			break
		}
	}
	return diags
}

func (p *Pipeline) decodeWorkspace(b *hcl.Block, opts Options) hcl.Diagnostics {
	content, diags := b.Body.Content(workspaceSchema)
	ctx := p.EvalContext(opts.Getenv)
	if a, ok := content.Attributes["dir"]; ok {
		val, d := a.Expr.Value(ctx)
		diags = append(diags, d...)
		if !d.HasErrors() {
			s, err := convert.Convert(val, cty.String)
			if err != nil || s.IsNull() || !s.IsKnown() || s.AsString() == "" {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid workspace dir",
					Detail:   "The workspace dir must be a non-empty string, a folder path.",
					Subject:  a.Expr.Range().Ptr(),
				})
			} else {
				p.Workspace.Dir = s.AsString()
			}
		}
	}
	if a, ok := content.Attributes["parallelism"]; ok {
		val, d := a.Expr.Value(ctx)
		diags = append(diags, d...)
		if !d.HasErrors() {
			n, err := convert.Convert(val, cty.Number)
			var i int64
			if err == nil && !n.IsNull() && n.IsKnown() {
				bf := n.AsBigFloat()
				if bf.IsInt() {
					i, _ = bf.Int64()
				}
			}
			if i < 1 {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid parallelism",
					Detail:   "parallelism must be a whole number of at least 1.",
					Subject:  a.Expr.Range().Ptr(),
				})
			} else {
				p.Workspace.Parallelism = int(i)
			}
		}
	}
	return diags
}

// EvalContext returns the evaluation context of the file: var, local and
// the functions. The engine adds `stage` to a child of it.
func (p *Pipeline) EvalContext(getenv func(string) (string, bool)) *hcl.EvalContext {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	vars := map[string]cty.Value{}
	for n, v := range p.Variables {
		vars[n] = v.Value
	}
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":   cty.ObjectVal(vars),
			"local": cty.ObjectVal(p.Locals),
			"path": cty.ObjectVal(map[string]cty.Value{
				"root": cty.StringVal(p.Dir),
			}),
		},
		Functions: Functions(p.Dir, getenv),
	}
}

// DidYouMean returns the candidate closest to s, if one is close enough.
func DidYouMean(s string, candidates []string) string {
	best, bestD := "", len(s)/3+2
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	for _, c := range sorted {
		if d := levenshtein(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
