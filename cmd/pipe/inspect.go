package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/pipeml/pipe/engine"
	"github.com/pipeml/pipe/stages"
)

func cmdShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	var asJSON bool
	fs := flag.NewFlagSet("pipe show", flag.ContinueOnError)
	c.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("usage: pipe show <stage>")
	}
	l, err := load(&c, stderr)
	if err != nil {
		return err
	}
	name := pos[0]
	if _, err := l.plan.Select([]string{name}); err != nil {
		return usageErr("%v", err)
	}
	st, err := l.ws.State()
	if err != nil {
		return err
	}
	s := st[name]
	if s == nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("stage %s has not run in this workspace yet", name)}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	how := "cached"
	if s.Executed {
		how = "executed"
	}
	fmt.Fprintf(stdout, "stage %s (kind %s, version %s)\n", s.Stage, s.Kind, s.Parts.Version)
	fmt.Fprintf(stdout, "action key  %s\nlast run    %s, %s (%s)\n", s.Key, s.RunID, how, s.Time.Local().Format(time.DateTime))
	fmt.Fprintln(stdout, "\noutputs:")
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, o := range s.Outputs {
		kind := "file"
		if o.Dir {
			kind = "dir"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", o.Name, kind, o.Digest, humanBytes(o.Size), rel(l.cfg.Dir, o.Path))
	}
	tw.Flush()
	fmt.Fprintln(stdout, "\ninputs:")
	for _, in := range s.Parts.Inputs {
		from := ""
		if in.Stage != "" {
			from = "  from stage " + in.Stage
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s%s\n", in.Name, in.Digest, rel(l.cfg.Dir, in.Path), from)
	}
	tw.Flush()
	for _, r := range sortedKeysOf(s.Parts.Refs) {
		fmt.Fprintf(stdout, "  (referenced) %s %s\n", r, s.Parts.Refs[r])
	}
	if len(s.Parts.Params) > 0 {
		fmt.Fprintln(stdout, "\nparameters:")
		for _, k := range sortedKeysOf(s.Parts.Params) {
			fmt.Fprintf(stdout, "  %s = %s\n", k, compact(s.Parts.Params[k]))
		}
	}
	if len(s.Summary) > 0 {
		b, _ := json.MarshalIndent(s.Summary, "  ", "  ")
		fmt.Fprintf(stdout, "\nsummary:\n  %s\n", b)
	}
	return nil
}

func cmdLog(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	var asJSON bool
	var n int
	fs := flag.NewFlagSet("pipe log", flag.ContinueOnError)
	c.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.IntVar(&n, "n", 20, "show the last `n` runs")
	if _, err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	l, err := load(&c, stderr)
	if err != nil {
		return err
	}
	runs, err := l.ws.Runs()
	if err != nil {
		return err
	}
	if len(runs) > n {
		runs = runs[:n]
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(runs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTARTED\tTIME\tRESULT\tEXECUTED\tCACHED\tFAILED\tTARGETS")
	for _, r := range runs {
		c := r.Counts()
		res := "ok"
		if !r.OK {
			res = "FAILED"
		}
		targets := strings.Join(r.Targets, " ")
		if targets == "" {
			targets = "(all)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2fs\t%s\t%d\t%d\t%d\t%s\n", r.ID, r.Started.Local().Format(time.DateTime), r.Seconds, res,
			c[engine.StatusExecuted], c[engine.StatusCached], c[engine.StatusFailed], targets)
	}
	return tw.Flush()
}

func cmdGraph(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	var format string
	fs := flag.NewFlagSet("pipe graph", flag.ContinueOnError)
	c.register(fs)
	fs.StringVar(&format, "format", "dot", "output `format`: dot or mermaid")
	if _, err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	l, err := load(&c, stderr)
	if err != nil {
		return err
	}
	switch format {
	case "dot":
		fmt.Fprint(stdout, graphDOT(l.plan))
	case "mermaid":
		fmt.Fprint(stdout, graphMermaid(l.plan))
	default:
		return usageErr("unknown graph format %q (use dot or mermaid)", format)
	}
	return nil
}

// graphDOT renders the plan as Graphviz DOT, stages in plan order.
func graphDOT(pl *engine.Plan) string {
	var b strings.Builder
	b.WriteString("digraph pipeline {\n  rankdir=LR;\n  node [shape=box];\n")
	for _, name := range pl.Order {
		n := pl.Nodes[name]
		fmt.Fprintf(&b, "  %s [label=%s];\n", strconv.Quote(name), strconv.Quote(name+"\n("+n.Def.Name+")"))
	}
	for _, name := range pl.Order {
		for _, d := range pl.Nodes[name].Deps {
			fmt.Fprintf(&b, "  %s -> %s;\n", strconv.Quote(d), strconv.Quote(name))
		}
	}
	b.WriteString("}\n")
	return b.String()
}

var mermaidID = regexp.MustCompile(`[^A-Za-z0-9_]`)

// graphMermaid renders the plan as a Mermaid flowchart.
func graphMermaid(pl *engine.Plan) string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	id := func(s string) string { return "s_" + mermaidID.ReplaceAllString(s, "_") }
	for _, name := range pl.Order {
		n := pl.Nodes[name]
		fmt.Fprintf(&b, "  %s[\"%s<br/>(%s)\"]\n", id(name), name, n.Def.Name)
	}
	for _, name := range pl.Order {
		for _, d := range pl.Nodes[name].Deps {
			fmt.Fprintf(&b, "  %s --> %s\n", id(d), id(name))
		}
	}
	return b.String()
}

func cmdGC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	var keep string
	var noWait, asJSON bool
	fs := flag.NewFlagSet("pipe gc", flag.ContinueOnError)
	c.register(fs)
	fs.StringVar(&keep, "keep", "0", "also keep anything used within this `duration` (e.g. 72h, 7d)")
	fs.BoolVar(&noWait, "no-wait", false, "fail instead of waiting for the workspace lock")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if _, err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	keepDur, err := parseDuration(keep)
	if err != nil {
		return usageErr("--keep: %v", err)
	}
	l, err := load(&c, stderr)
	if err != nil {
		return err
	}
	if err := l.ws.Lock(ctx, !noWait, func(h string) { fmt.Fprintf(stderr, "waiting for the workspace lock (%s)\n", h) }); err != nil {
		return &exitError{code: exitLocked, err: err}
	}
	defer l.ws.Unlock()
	st, err := engine.GC(l.plan, keepDur)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(st)
	}
	fmt.Fprintf(stdout, "removed %d actions, %d objects, %d item indexes, %d stale outputs: freed %s; kept %d actions, %d objects (%s)\n",
		st.ActionsRemoved, st.ObjectsRemoved, st.ItemIndexesRemoved, st.OutputsRemoved, humanBytes(st.BytesFreed), st.ActionsKept, st.ObjectsKept, humanBytes(st.BytesKept))
	return nil
}

// parseDuration accepts Go durations plus a "d" (day) suffix.
func parseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n * 24 * float64(time.Hour)), nil
	}
	return time.ParseDuration(s)
}

func cmdStages(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pipe stages", flag.ContinueOnError)
	var asMarkdown bool
	fs.BoolVar(&asMarkdown, "markdown", false, "print Markdown (for docs)")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	reg, err := registry()
	if err != nil {
		return err
	}
	names := pos
	if len(names) == 0 {
		names = reg.Names()
	}
	for i, name := range names {
		def, ok := reg.Lookup(name)
		if !ok {
			return usageErr("no stage kind %q (kinds: %s)", name, strings.Join(reg.Names(), ", "))
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprint(stdout, stageDoc(def))
	}
	return nil
}

// stageDoc renders a kind's documentation: its Doc, then a reference of
// its parameters, inputs and outputs generated from the schema.
func stageDoc(def *stages.Definition) string {
	var b strings.Builder
	title, body, _ := strings.Cut(def.Doc, "\n")
	fmt.Fprintf(&b, "# %s — %s (version %s)\n\n", def.Name, strings.TrimSpace(title), def.Version)
	if body = strings.TrimSpace(body); body != "" {
		b.WriteString(body + "\n\n")
	}
	b.WriteString("Schema:\n\n")
	for _, k := range sortedKeysOf(def.Spec) {
		typ, req, dflt := specInfo(def.Spec[k])
		line := fmt.Sprintf("- `%s` (%s", k, typ)
		if req {
			line += ", required"
		}
		if dflt != "" {
			line += ", default " + dflt
		}
		b.WriteString(line + ")\n")
	}
	for _, in := range def.Inputs {
		typ := "path"
		if in.List {
			typ = "list of paths"
		}
		req := ""
		if in.Required {
			req = ", required"
		}
		fmt.Fprintf(&b, "- `%s` (input: %s%s) %s\n", in.Name, typ, req, in.Doc)
	}
	b.WriteString("- `depends_on` (list of stage references)\n")
	if len(def.Outputs) > 0 {
		b.WriteString("\nOutputs:\n\n")
		for _, o := range def.Outputs {
			kind := "file"
			if o.Kind == stages.Dir {
				kind = "folder"
			}
			fmt.Fprintf(&b, "- `%s` (%s) %s\n", o.Name, kind, o.Doc)
		}
	} else if def.OutputsOf != nil {
		b.WriteString("\nOutputs: declared in the stage block.\n")
	}
	return b.String()
}

func specInfo(s hcldec.Spec) (typ string, required bool, dflt string) {
	switch s := s.(type) {
	case *hcldec.AttrSpec:
		return typeName(s.Type), s.Required, ""
	case *hcldec.DefaultSpec:
		t, r, _ := specInfo(s.Primary)
		if lit, ok := s.Default.(*hcldec.LiteralSpec); ok {
			if b, err := ctyJSON(lit.Value); err == nil {
				dflt = b
			}
		}
		return t, r, dflt
	case *hcldec.BlockSpec:
		return "block", s.Required, ""
	case *hcldec.BlockListSpec:
		return "blocks", s.MinItems > 0, ""
	default:
		return "value", false, ""
	}
}

func typeName(t cty.Type) string {
	if t == cty.NilType {
		return "any"
	}
	return t.FriendlyName()
}

func ctyJSON(v cty.Value) (string, error) {
	b, err := json.Marshal(ctyToGo(v))
	return string(b), err
}

func ctyToGo(v cty.Value) any {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return v.AsString()
	case t == cty.Number:
		f, _ := v.AsBigFloat().Float64()
		return f
	case t == cty.Bool:
		return v.True()
	case t.IsListType() || t.IsSetType() || t.IsTupleType():
		out := []any{}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			out = append(out, ctyToGo(e))
		}
		return out
	case t.IsMapType() || t.IsObjectType():
		out := map[string]any{}
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			out[k.AsString()] = ctyToGo(e)
		}
		return out
	}
	return nil
}

// compact re-encodes JSON on one line, without HTML escapes.
func compact(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return strings.TrimSpace(buf.String())
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func rel(dir, p string) string {
	if r, err := filepath.Rel(dir, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

func sortedKeysOf[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
