package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"path"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/pipeml/pipe/engine"
)

// maxMetricsFile bounds the JSON files read for metrics.
const maxMetricsFile = 32 << 20

// metric is one number of a run: a stage's summary value or a numeric
// leaf of one of its JSON reports.
type metric struct {
	Stage string `json:"stage"`
	// File is "summary" for the run summary, else the output name, and
	// for a folder output "<output>/<file>".
	File  string  `json:"file"`
	Name  string  `json:"metric"`
	Value float64 `json:"value"`
}

func (m metric) key() string { return m.Stage + "\x00" + m.File + "\x00" + m.Name }

// runMetrics collects the numbers of a run: every stage's summary, and the
// numeric leaves of its JSON reports: a file output called "report", and
// files named *report.json in folder outputs (read from the cache by
// digest, so an old run's numbers are its own, not the latest outputs').
// Arrays are left out (sample lists, per-example results); objects nest
// with dots in the name. An object no longer in the cache (after gc) is
// skipped and reported in missing.
func runMetrics(ws *engine.Workspace, r *engine.RunRecord) (ms []metric, missing []string) {
	for _, s := range r.Stages {
		if !s.OK() {
			continue
		}
		flattenJSONValue(s.Summary, "", func(name string, v float64) {
			ms = append(ms, metric{Stage: s.Name, File: "summary", Name: name, Value: v})
		})
		seen := map[string]bool{}
		add := func(file string, data []byte) {
			var v any
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			if dec.Decode(&v) != nil {
				return
			}
			flattenJSONValue(v, "", func(name string, x float64) {
				ms = append(ms, metric{Stage: s.Name, File: file, Name: name, Value: x})
			})
		}
		for _, o := range s.Outputs {
			if !o.Dir {
				if o.Name != "report" || seen[string(o.Digest)] || o.Size > maxMetricsFile {
					continue
				}
				b, err := ws.Cache.ReadObject(o.Digest)
				if err != nil {
					missing = append(missing, s.Name+"."+o.Name)
					continue
				}
				seen[string(o.Digest)] = true
				add(o.Name, b)
				continue
			}
			man, err := ws.Cache.ReadManifest(o.Digest)
			if err != nil {
				missing = append(missing, s.Name+"."+o.Name)
				continue
			}
			for _, e := range man.Entries {
				if !strings.HasSuffix(path.Base(e.Path), "report.json") || seen[string(e.Digest)] || e.Size > maxMetricsFile {
					continue
				}
				b, err := ws.Cache.ReadObject(e.Digest)
				if err != nil {
					missing = append(missing, s.Name+"."+o.Name+"/"+e.Path)
					continue
				}
				seen[string(e.Digest)] = true
				add(o.Name+"/"+e.Path, b)
			}
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].key() < ms[j].key() })
	return ms, missing
}

// flattenJSONValue calls fn for each number (and boolean, as 0 or 1) in v,
// naming it by its object keys joined with dots. Arrays are skipped.
func flattenJSONValue(v any, prefix string, fn func(name string, v float64)) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			flattenJSONValue(e, join(k), fn)
		}
	case json.Number:
		if f, err := x.Float64(); err == nil {
			fn(prefix, f)
		}
	case float64:
		fn(prefix, x)
	case int:
		fn(prefix, float64(x))
	case int64:
		fn(prefix, float64(x))
	case bool:
		if x {
			fn(prefix, 1)
		} else {
			fn(prefix, 0)
		}
	}
}

// findRun resolves a run reference: "" or "~0" is the newest run, "~N" the
// Nth before it, anything else a run id or a unique prefix of one. runs
// are newest first.
func findRun(runs []*engine.RunRecord, ref string) (*engine.RunRecord, error) {
	if len(runs) == 0 {
		return nil, fmt.Errorf("no runs recorded in this workspace yet")
	}
	if ref == "" {
		ref = "~0"
	}
	if n, ok := strings.CutPrefix(ref, "~"); ok {
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 {
			return nil, fmt.Errorf("run %q: want ~N with N a whole number (~0 is the newest run)", ref)
		}
		if i >= len(runs) {
			return nil, fmt.Errorf("run %s: only %d runs are recorded", ref, len(runs))
		}
		return runs[i], nil
	}
	var found *engine.RunRecord
	for _, r := range runs {
		if r.ID == ref {
			return r, nil
		}
		if strings.HasPrefix(r.ID, ref) {
			if found != nil {
				return nil, fmt.Errorf("run %q is ambiguous (%s, %s, ...); give more of the id", ref, found.ID, r.ID)
			}
			found = r
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no run %q (see pipe log)", ref)
	}
	return found, nil
}

func formatNumber(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

const metricsUsage = `usage:
  pipe metrics show [flags] [run]          the numbers of a run (default: the newest)
  pipe metrics diff [flags] [old [new]]    how they moved between two runs
                                           (default: the run before the newest, and the newest)

A run is an id from pipe log, a unique prefix of one, or ~N (the Nth run
before the newest; ~0 is the newest). The numbers are each stage's summary
and the numeric fields of its JSON reports (a file output named report,
*report.json files in folder outputs), read from the cache as that run
stored them. Lists inside reports are left out.
`

func cmdMetrics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "show" && args[0] != "diff") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, metricsUsage)
			return nil
		}
		return usageErr("%s", strings.TrimSpace(metricsUsage))
	}
	sub := args[0]
	var c common
	var asJSON, all, markdown bool
	var stage string
	fs := flag.NewFlagSet("pipe metrics "+sub, flag.ContinueOnError)
	c.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.BoolVar(&markdown, "md", false, "print a Markdown table")
	fs.StringVar(&stage, "stage", "", "only the metrics of this `stage`")
	if sub == "diff" {
		fs.BoolVar(&all, "all", false, "also list metrics that did not change")
	}
	pos, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return err
	}
	if (sub == "show" && len(pos) > 1) || len(pos) > 2 {
		return usageErr("%s", strings.TrimSpace(metricsUsage))
	}
	l, err := load(&c, stderr)
	if err != nil {
		return err
	}
	runs, err := l.ws.Runs()
	if err != nil {
		return err
	}
	collect := func(ref string) (*engine.RunRecord, []metric, error) {
		r, err := findRun(runs, ref)
		if err != nil {
			return nil, nil, usageErr("%v", err)
		}
		ms, missing := runMetrics(l.ws, r)
		for _, m := range missing {
			fmt.Fprintf(stderr, "pipe metrics: run %s: %s is no longer in the cache (pipe gc removed it); its numbers are left out\n", r.ID, m)
		}
		if stage != "" {
			kept := ms[:0]
			for _, m := range ms {
				if m.Stage == stage {
					kept = append(kept, m)
				}
			}
			ms = kept
		}
		return r, ms, nil
	}

	if sub == "show" {
		ref := ""
		if len(pos) == 1 {
			ref = pos[0]
		}
		r, ms, err := collect(ref)
		if err != nil {
			return err
		}
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(struct {
				Run     string   `json:"run"`
				Metrics []metric `json:"metrics"`
			}{r.ID, ms})
		}
		rows := [][]string{{"Stage", "File", "Metric", "Value"}}
		for _, m := range ms {
			rows = append(rows, []string{m.Stage, m.File, m.Name, formatNumber(m.Value)})
		}
		fmt.Fprintf(stdout, "run %s\n", r.ID)
		return writeTable(stdout, rows, markdown)
	}

	oldRef, newRef := "~1", "~0"
	switch len(pos) {
	case 1:
		oldRef = pos[0]
	case 2:
		oldRef, newRef = pos[0], pos[1]
	}
	oldRun, oldMs, err := collect(oldRef)
	if err != nil {
		return err
	}
	newRun, newMs, err := collect(newRef)
	if err != nil {
		return err
	}
	diffs := diffMetrics(oldMs, newMs, all)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Old     string       `json:"old"`
			New     string       `json:"new"`
			Metrics []metricDiff `json:"metrics"`
		}{oldRun.ID, newRun.ID, diffs})
	}
	fmt.Fprintf(stdout, "old %s, new %s\n", oldRun.ID, newRun.ID)
	if len(diffs) == 0 {
		fmt.Fprintln(stdout, "no metric changed")
		return nil
	}
	rows := [][]string{{"Stage", "File", "Metric", "Old", "New", "Change"}}
	for _, d := range diffs {
		o, n, ch := "-", "-", "-"
		if d.Old != nil {
			o = formatNumber(*d.Old)
		}
		if d.New != nil {
			n = formatNumber(*d.New)
		}
		if d.Change != nil {
			ch = formatNumber(*d.Change)
			if *d.Change > 0 {
				ch = "+" + ch
			}
		}
		rows = append(rows, []string{d.Stage, d.File, d.Name, o, n, ch})
	}
	return writeTable(stdout, rows, markdown)
}

// metricDiff is one line of pipe metrics diff; Old or New is nil when the
// metric exists in one run only.
type metricDiff struct {
	Stage  string   `json:"stage"`
	File   string   `json:"file"`
	Name   string   `json:"metric"`
	Old    *float64 `json:"old"`
	New    *float64 `json:"new"`
	Change *float64 `json:"change,omitempty"`
}

// diffMetrics pairs the metrics of two runs by stage, file and name, in
// that order; unchanged ones only with all.
func diffMetrics(old, new []metric, all bool) []metricDiff {
	byKey := map[string]*metricDiff{}
	var keys []string
	get := func(m metric) *metricDiff {
		k := m.key()
		d := byKey[k]
		if d == nil {
			d = &metricDiff{Stage: m.Stage, File: m.File, Name: m.Name}
			byKey[k] = d
			keys = append(keys, k)
		}
		return d
	}
	for _, m := range old {
		v := m.Value
		get(m).Old = &v
	}
	for _, m := range new {
		v := m.Value
		get(m).New = &v
	}
	sort.Strings(keys)
	var out []metricDiff
	for _, k := range keys {
		d := byKey[k]
		if d.Old != nil && d.New != nil {
			ch := *d.New - *d.Old
			if ch == 0 && !all {
				continue
			}
			d.Change = &ch
		}
		out = append(out, *d)
	}
	return out
}

// writeTable prints rows (the first is the header) aligned, or as a
// Markdown table.
func writeTable(w io.Writer, rows [][]string, markdown bool) error {
	if markdown {
		for i, r := range rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
			if i == 0 {
				fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(r)))
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}
