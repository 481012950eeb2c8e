package lengths

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/stages/recordset"
	"github.com/pipeml/pipe/tokenizer"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
)

// Definition is the `lengths` stage kind.
var Definition = &stages.Definition{
	Name:    "lengths",
	Version: "1",
	Doc:     doc,
	Spec:    spec,
	Inputs: []stages.InputSpec{
		{Name: "records", Doc: "JSONL record files, or folders walked for *.jsonl.", Required: true, List: true},
		{Name: "tokenizer", Doc: "A tokenizer folder (tokenizer.json, tokenizer_config.json); by default the Qwen2.5 tokenizer from the cache folder."},
	},
	Outputs: []stages.OutputSpec{
		{Name: "report", Doc: "Length statistics and the recommended max_len (JSON).", Kind: stages.File},
		{Name: "histogram", Doc: "Histogram of token lengths by source (PNG).", Kind: stages.File},
	},
	New: newStage,
}

const doc = `Token length report

Tokenizes every record of ` + "`records`" + ` as training will (tokenizer.EncodeRecord:
the Qwen2.5 chat template for chat records, prompt then completion for
prompt/completion records such as FIM) and reports, per source
(meta.source; "unknown" when missing) and overall: count, total tokens,
min, max, mean and the P50, P90, P95 and P99 percentiles. A map stage with
one item per input file.

Outputs:

- ` + "`report`" + ` (JSON). Its top-level ` + "`max_len`" + ` is the length that keeps
  the share ` + "`keep`" + ` of all records: the nearest-rank percentile ` + "`keep`" + `
  (the smallest length L such that at least that share of records have at
  most L tokens), rounded up to a multiple of ` + "`multiple`" + ` so padded
  batches fit hardware tiles. ` + "`kept`" + ` is the share of records it actually
  keeps (at least ` + "`keep`" + `). A later stage can read it with
  ` + "`jsondecode(file(...)).max_len`" + `. Lines that are not records, and records
  the tokenizer rejects, are skipped and listed with file and line.
- ` + "`histogram`" + ` (PNG, 960x540): a stacked histogram of lengths by source
  with the ` + "`max_len`" + ` marked.

Percentiles are nearest-rank values, so every figure is the length of a
real record; the mean is rounded to three decimals.

Parameters:

- ` + "`keep`" + ` (number, default 0.95): the share of records max_len keeps.
- ` + "`multiple`" + ` (number, default 64): max_len is rounded up to a multiple
  of it.
- ` + "`bins`" + ` (number, default 40): about how many histogram bars to draw.

The tokenizer is the ` + "`tokenizer`" + ` input folder when set, else the Qwen2.5
tokenizer that tokenizer.Default finds.
`

func attr(name string, ty cty.Type, def cty.Value) hcldec.Spec {
	return &hcldec.DefaultSpec{
		Primary: &hcldec.AttrSpec{Name: name, Type: ty},
		Default: &hcldec.LiteralSpec{Value: def},
	}
}

var spec = hcldec.ObjectSpec{
	"keep":     attr("keep", cty.Number, cty.NumberFloatVal(0.95)),
	"multiple": attr("multiple", cty.Number, cty.NumberIntVal(64)),
	"bins":     attr("bins", cty.Number, cty.NumberIntVal(40)),
}

type config struct {
	Keep     float64 `cty:"keep"`
	Multiple int     `cty:"multiple"`
	Bins     int     `cty:"bins"`
}

// Stage is a configured lengths stage.
type Stage struct {
	cfg config

	tokOnce sync.Once
	tok     *tokenizer.Tokenizer
	tokErr  error
}

var _ stages.Mapper = (*Stage)(nil)

func newStage(v cty.Value) (stages.Stage, hcl.Diagnostics) {
	var c config
	if err := gocty.FromCtyValue(v, &c); err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid lengths parameters", Detail: err.Error()}}
	}
	var diags hcl.Diagnostics
	if !(c.Keep > 0 && c.Keep <= 1) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid keep",
			Detail: fmt.Sprintf("keep is %g; it is a share of records, greater than 0 and at most 1.", c.Keep)})
	}
	if c.Multiple < 1 {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid multiple",
			Detail: "multiple must be a positive whole number (1 turns rounding off)."})
	}
	if c.Bins < 1 || c.Bins > 400 {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid bins",
			Detail: "bins must be between 1 and 400."})
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return &Stage{cfg: c}, nil
}

func (s *Stage) tokenizer(env *stages.Env) (*tokenizer.Tokenizer, error) {
	s.tokOnce.Do(func() { s.tok, s.tokErr = tokenizer.LoadInput(env.Paths("tokenizer")) })
	return s.tok, s.tokErr
}

// Run measures every input file; the engine drives Items, Map and Reduce
// itself, with a cache per file.
func (s *Stage) Run(ctx context.Context, env *stages.Env) error {
	return stages.RunMapper(ctx, env, s)
}

// Items lists one item per JSONL file, keyed by its path.
func (s *Stage) Items(ctx context.Context, env *stages.Env) ([]stages.Item, error) {
	files, err := recordset.List(env.Paths("records"))
	if err != nil {
		return nil, err
	}
	items := make([]stages.Item, len(files))
	for i, f := range files {
		items[i] = stages.Item{Key: f.Path, Files: []string{f.Path}}
	}
	return items, nil
}

// itemResult is what Map writes for one file.
type itemResult struct {
	File string `json:"file"`
	// Lengths holds each source's token lengths, in file order.
	Lengths map[string][]int    `json:"lengths"`
	Bad     []recordset.BadLine `json:"bad,omitempty"`
}

// unknownSource is the source of records without meta.source.
const unknownSource = "unknown"

// Map tokenizes the records of one file.
func (s *Stage) Map(ctx context.Context, env *stages.Env, item stages.Item, w io.Writer) error {
	tok, err := s.tokenizer(env)
	if err != nil {
		return err
	}
	name := filepath.Base(item.Key)
	res, err := recordset.Read(ctx, []recordset.File{{Path: item.Key, Input: item.Key, Name: name}})
	if err != nil {
		return err
	}
	out := itemResult{File: name, Lengths: map[string][]int{}, Bad: res.Bad}
	for _, r := range res.Records {
		ids, _, err := tok.EncodeRecord(r.Record, false)
		if err != nil {
			out.Bad = append(out.Bad, recordset.BadLine{File: name, Line: r.Line, Error: "cannot tokenize: " + err.Error()})
			continue
		}
		src := r.MetaString("source")
		if src == "" {
			src = unknownSource
		}
		out.Lengths[src] = append(out.Lengths[src], len(ids))
	}
	// Bad lines in line order, whichever check found them.
	sort.SliceStable(out.Bad, func(i, j int) bool { return out.Bad[i].Line < out.Bad[j].Line })
	return json.NewEncoder(w).Encode(&out)
}

// Report is the JSON written to the `report` output.
type Report struct {
	// MaxLen is the recommended max_len (see the stage documentation).
	MaxLen int `json:"max_len"`
	// Keep and Multiple are the parameters behind MaxLen; Kept is the
	// share of records no longer than MaxLen.
	Keep     float64 `json:"keep"`
	Multiple int     `json:"multiple"`
	Kept     float64 `json:"kept"`
	// Rule says in words how MaxLen was chosen.
	Rule     string           `json:"rule"`
	Overall  Stats            `json:"overall"`
	BySource map[string]Stats `json:"by_source"`
	Files    int              `json:"files"`
	// BadLines counts skipped lines; Bad lists the first maxBadListed.
	BadLines int                 `json:"bad_lines"`
	Bad      []recordset.BadLine `json:"bad,omitempty"`
}

// maxBadListed bounds the bad lines listed in the report.
const maxBadListed = 100

// Reduce merges the items' lengths and writes the report and histogram.
func (s *Stage) Reduce(ctx context.Context, env *stages.Env, results []stages.ItemResult) error {
	sorted := append([]stages.ItemResult(nil), results...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Item.Key < sorted[j].Item.Key })
	bySource := map[string][]int{}
	rep := Report{
		Keep:     s.cfg.Keep,
		Multiple: s.cfg.Multiple,
		Rule: fmt.Sprintf("nearest-rank P%g of all records' token lengths, rounded up to a multiple of %d",
			math.Round(s.cfg.Keep*100*1e6)/1e6, s.cfg.Multiple),
		BySource: map[string]Stats{},
	}
	var all []int
	for _, r := range sorted {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := readResult(r)
		if err != nil {
			return err
		}
		rep.Files++
		rep.BadLines += len(res.Bad)
		for _, b := range res.Bad {
			if len(rep.Bad) < maxBadListed {
				rep.Bad = append(rep.Bad, b)
			}
		}
		for src, ls := range res.Lengths {
			bySource[src] = append(bySource[src], ls...)
			all = append(all, ls...)
		}
	}
	names := make([]string, 0, len(bySource))
	for src := range bySource {
		names = append(names, src)
	}
	sort.Strings(names)
	var ss []series
	for _, src := range names {
		rep.BySource[src] = computeStats(bySource[src]) // sorts
		ss = append(ss, series{name: src, lengths: bySource[src]})
	}
	rep.Overall = computeStats(all) // sorts all
	if len(all) > 0 {
		rep.MaxLen = maxLenFor(all, s.cfg.Keep, s.cfg.Multiple)
		rep.Kept = keptShare(all, rep.MaxLen)
	}

	b, err := json.MarshalIndent(&rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(env.OutputPath("report"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	var png bytes.Buffer
	title := fmt.Sprintf("Token lengths of %d records (P50 %d, P95 %d, max %d)",
		rep.Overall.Count, rep.Overall.P50, rep.Overall.P95, rep.Overall.Max)
	if err := plotHistogram(&png, ss, s.cfg.Bins, rep.MaxLen, rep.Kept, title); err != nil {
		return err
	}
	if err := os.WriteFile(env.OutputPath("histogram"), png.Bytes(), 0o644); err != nil {
		return err
	}
	if env.Summary != nil {
		env.Summary["records"] = rep.Overall.Count
		env.Summary["max_len"] = rep.MaxLen
		env.Summary["p95"] = rep.Overall.P95
		env.Summary["max"] = rep.Overall.Max
		env.Summary["bad_lines"] = rep.BadLines
	}
	return nil
}

func readResult(r stages.ItemResult) (*itemResult, error) {
	rc, err := r.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var res itemResult
	if err := json.NewDecoder(rc).Decode(&res); err != nil {
		return nil, fmt.Errorf("lengths: result of %s: %v", r.Item.Key, err)
	}
	return &res, nil
}
