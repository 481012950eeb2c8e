package split

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/stages/dedupe"
	"github.com/pipeml/pipe/stages/recordset"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
	"github.com/zeebo/blake3"
)

var params = []stages.Param{
	param("eval_frac", cty.Number, cty.NumberFloatVal(0.15), "Share of groups (and, in expectation, of records) that go to eval: a group is in eval when its hash falls below this fraction of the hash range."),
	param("min_eval", cty.Number, cty.NumberIntVal(1), "Minimum eval records: when eval_frac gives fewer, the groups with the next-lowest hashes join eval (never the last group)."),
	param("max_eval", cty.Number, cty.NumberIntVal(2000), "Maximum eval records (0: no maximum): when eval_frac gives more, the eval groups with the highest hashes go to train."),
	param("seed", cty.Number, cty.NumberIntVal(0), "Seed hashed with each group; changing it draws a new split."),
	param("default_source", cty.String, cty.StringVal(""), "`meta.source` for records without one; empty uses the input's file or folder name without `.jsonl`."),
	param("dedupe", cty.Bool, cty.True, "Drop records whose normalised content equals an earlier record's, across all inputs (the first in input order stays)."),
	param("near_dup", cty.Bool, cty.True, "Group near-duplicates found here with MinHash so they land on one side. Records that carry `meta.near_dup_cluster` (quality's tag mode) are grouped by it in any case."),
	param("near_dup_threshold", cty.Number, cty.NumberFloatVal(0.7), "Estimated Jaccard similarity at which two records of different groups are tied together."),
	param("near_dup_ngram", cty.Number, cty.NumberIntVal(5), "Shingle size in words."),
	param("near_dup_perms", cty.Number, cty.NumberIntVal(100), "MinHash permutations (fewer than quality's 256: here a pair only needs to be found, not measured finely)."),
	param("near_dup_bands", cty.Number, cty.NumberIntVal(20), "LSH bands."),
	param("near_dup_rows", cty.Number, cty.NumberIntVal(5), "Rows per band; 20 x 5 finds 97% of pairs at Jaccard 0.7 (BigCode's 25 x 10 finds 51%)."),
	param("near_dup_roles", cty.List(cty.String), strList("user", "assistant"), "Chat records: roles whose content is compared."),
}

type config struct {
	EvalFrac         float64  `cty:"eval_frac"`
	MinEval          int      `cty:"min_eval"`
	MaxEval          int      `cty:"max_eval"`
	Seed             int64    `cty:"seed"`
	DefaultSource    string   `cty:"default_source"`
	Dedupe           bool     `cty:"dedupe"`
	NearDup          bool     `cty:"near_dup"`
	NearDupThreshold float64  `cty:"near_dup_threshold"`
	NGram            int      `cty:"near_dup_ngram"`
	Perms            int      `cty:"near_dup_perms"`
	Bands            int      `cty:"near_dup_bands"`
	Rows             int      `cty:"near_dup_rows"`
	NearDupRoles     []string `cty:"near_dup_roles"`
}

func (c *config) minhash() dedupe.Params {
	return dedupe.Params{NGram: c.NGram, Perms: c.Perms, Bands: c.Bands, Rows: c.Rows, Seed: 42}
}

// Definition is the `split` stage kind.
var Definition = &stages.Definition{
	Name:    "split",
	Version: "1",
	Doc:     doc,
	Spec:    stages.ParamSpec(params),
	Inputs: []stages.InputSpec{{
		Name: "records", Required: true, List: true,
		Doc: "JSONL record files or folders, any number; each one's records without `meta.source` are tagged with its name.",
	}},
	Outputs: []stages.OutputSpec{
		{Name: "train", Kind: stages.File, Doc: "Training records (JSONL), in input order."},
		{Name: "eval", Kind: stages.File, Doc: "Evaluation records (JSONL), in input order."},
		{Name: "report", Kind: stages.File, Doc: "Counts per source and side, groups, units, the threshold used (JSON)."},
	},
	New: newStage,
}

func newStage(v cty.Value) (stages.Stage, hcl.Diagnostics) {
	var c config
	if err := gocty.FromCtyValue(v, &c); err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid split parameters", Detail: err.Error()}}
	}
	var diags hcl.Diagnostics
	bad := func(name, detail string) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid value for " + name, Detail: detail})
	}
	if c.EvalFrac < 0 || c.EvalFrac >= 1 {
		bad("eval_frac", "eval_frac must be at least 0 and less than 1.")
	}
	if c.MinEval < 0 || c.MaxEval < 0 {
		bad("min_eval", "min_eval and max_eval must not be negative.")
	}
	if c.MaxEval > 0 && c.MinEval > c.MaxEval {
		bad("min_eval", fmt.Sprintf("min_eval (%d) exceeds max_eval (%d).", c.MinEval, c.MaxEval))
	}
	if c.NearDup {
		if err := c.minhash().Validate(); err != nil {
			bad("near_dup_perms", "The MinHash parameters are inconsistent: "+err.Error()+".")
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return &stage{cfg: c}, nil
}

type stage struct{ cfg config }

// file is a JSONL file with the source its records default to.
type file struct {
	recordset.File
	source string
}

// inputFiles lists the files of every input, each tagged with the default
// source of its input, sorted by path (a file named by two inputs counts
// once, with the input first in path order).
func (s *stage) inputFiles(inputs []string) ([]file, error) {
	inputs = slices.Clone(inputs)
	slices.Sort(inputs)
	inputs = slices.Compact(inputs)
	var files []file
	seen := map[string]bool{}
	for _, in := range inputs {
		fs, err := recordset.List([]string{in})
		if err != nil {
			return nil, err
		}
		src := s.cfg.DefaultSource
		if src == "" {
			src = strings.TrimSuffix(filepath.Base(in), ".jsonl")
		}
		for _, f := range fs {
			if !seen[f.Path] {
				seen[f.Path] = true
				files = append(files, file{File: f, source: src})
			}
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// Run implements stages.Stage.
func (s *stage) Run(ctx context.Context, env *stages.Env) error {
	c := &s.cfg
	files, err := s.inputFiles(env.Paths("records"))
	if err != nil {
		return err
	}
	plain := make([]recordset.File, len(files))
	for i, f := range files {
		plain[i] = f.File
	}
	in, err := recordset.Read(ctx, plain)
	if err != nil {
		return err
	}
	par := env.Parallelism
	if par < 1 {
		par = runtime.GOMAXPROCS(0)
	}
	rep := newReport(c, in.Bad)

	// Tag sources, drop exact duplicates.
	var recs []recordset.Record
	first := map[dedupe.Key]bool{}
	for _, r := range in.Records {
		if r.MetaString("source") == "" {
			r.Record = withMeta(r.Record, "source", files[r.File].source)
		}
		src := r.MetaString("source")
		rep.source(src).In++
		if c.Dedupe {
			k := dedupe.ExactKey(r.Record)
			if first[k] {
				rep.source(src).Duplicates++
				rep.Duplicates++
				continue
			}
			first[k] = true
		}
		recs = append(recs, r)
	}

	// Groups, then units: groups tied by near-duplicates or a shared
	// quality cluster.
	groupIdx := map[string]int{}
	var groups []string
	recGroup := make([]int, len(recs))
	for i, r := range recs {
		g := groupKey(r.Record)
		gi, ok := groupIdx[g]
		if !ok {
			gi = len(groups)
			groupIdx[g] = gi
			groups = append(groups, g)
		}
		recGroup[i] = gi
	}
	var edges []dedupe.Edge
	clusterFirst := map[string]int{}
	for i, r := range recs {
		cl := r.MetaString("near_dup_cluster")
		if cl == "" {
			continue
		}
		if j, ok := clusterFirst[cl]; ok {
			if recGroup[i] != recGroup[j] {
				edges = append(edges, dedupe.Edge{A: min(recGroup[i], recGroup[j]), B: max(recGroup[i], recGroup[j])})
				rep.ClusterTies++
			}
		} else {
			clusterFirst[cl] = i
		}
	}
	if c.NearDup && len(recs) > 0 {
		mh, err := dedupe.NewMinHasher(c.minhash())
		if err != nil {
			return err
		}
		sk, err := mh.Sketch(ctx, len(recs), func(i int) string { return dedupe.Text(recs[i].Record, c.NearDupRoles) }, par)
		if err != nil {
			return err
		}
		nd, err := dedupe.Candidates(ctx, sk, dedupe.CandidateOptions{
			Threshold:   c.NearDupThreshold,
			Parallelism: par,
			Skip:        func(a, b int) bool { return recGroup[a] == recGroup[b] },
		})
		if err != nil {
			return err
		}
		rep.NearDupPairs = len(nd)
		for _, e := range nd {
			a, b := recGroup[e.A], recGroup[e.B]
			edges = append(edges, dedupe.Edge{A: min(a, b), B: max(a, b)})
		}
	}
	unitOf := dedupe.Components(len(groups), edges)

	// Each unit's position is the lowest hash of its groups.
	hashes := make([]uint64, len(groups))
	for i, g := range groups {
		hashes[i] = groupHash(c.Seed, g)
	}
	units := map[int]*unit{}
	for gi, root := range unitOf {
		u := units[root]
		if u == nil {
			u = &unit{root: root, hash: math.MaxUint64}
			units[root] = u
		}
		u.groups++
		if hashes[gi] < u.hash || hashes[gi] == u.hash && groups[gi] < u.key {
			u.hash, u.key = hashes[gi], groups[gi]
		}
	}
	for i := range recs {
		units[unitOf[recGroup[i]]].records++
	}
	order := make([]*unit, 0, len(units))
	for _, u := range units {
		order = append(order, u)
	}
	slices.SortFunc(order, func(a, b *unit) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(a.key, b.key)
	})
	nEval, clamp := evalPrefix(order, c.EvalFrac, c.MinEval, c.MaxEval)
	for _, u := range order[:nEval] {
		u.eval = true
	}
	rep.setUnits(order, nEval, clamp, c.EvalFrac)

	// Write both sides in input order.
	if err := s.write(env, recs, func(i int) bool { return units[unitOf[recGroup[i]]].eval }, groups, recGroup, rep); err != nil {
		return err
	}
	env.Summary = rep.summary()
	return nil
}

// unit is a set of groups that must share a side.
type unit struct {
	root    int
	key     string // the group whose hash is the unit's
	hash    uint64
	groups  int
	records int
	eval    bool
}

// evalPrefix returns how many units, in hash order, go to eval, and which
// bound applied ("", "min_eval" or "max_eval"). Without a bound, eval is
// every unit whose hash is below frac of the hash range, so a group's side
// depends on its own hash only. min_eval extends the prefix and max_eval
// shortens it; either way eval stays a prefix of the hash order.
func evalPrefix(order []*unit, frac float64, minEval, maxEval int) (int, string) {
	threshold := fracThreshold(frac)
	n, records := 0, 0
	for n < len(order) && order[n].hash < threshold {
		records += order[n].records
		n++
	}
	clamp := ""
	for records < minEval && n < len(order)-1 {
		records += order[n].records
		n++
		clamp = "min_eval"
	}
	for maxEval > 0 && records > maxEval && n > 0 {
		n--
		records -= order[n].records
		clamp = "max_eval"
	}
	return n, clamp
}

// fracThreshold is frac of the 64-bit hash range.
func fracThreshold(frac float64) uint64 {
	if frac <= 0 {
		return 0
	}
	return uint64(math.Ldexp(frac, 64))
}

// groupKey is the record's group, or, for a record without one, a key of
// its content: such a record is its own group.
func groupKey(r *artifacts.Record) string {
	if g := r.MetaString("group"); g != "" {
		return g
	}
	k := dedupe.ExactKey(r)
	return "content:" + hex.EncodeToString(k[:])
}

// groupHash places a group in [0, 2^64): BLAKE3 of the seed and the group
// name. It depends on nothing else, which is what keeps a group on its
// side when other data arrives.
func groupHash(seed int64, group string) uint64 {
	h := blake3.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(group))
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}

func withMeta(r *artifacts.Record, k string, v any) *artifacts.Record {
	out := *r
	out.Meta = make(map[string]any, len(r.Meta)+1)
	for kk, vv := range r.Meta {
		out.Meta[kk] = vv
	}
	out.Meta[k] = v
	return &out
}

func (s *stage) write(env *stages.Env, recs []recordset.Record, isEval func(int) bool, groups []string, recGroup []int, rep *report) error {
	trainF, err := os.Create(env.OutputPath("train"))
	if err != nil {
		return err
	}
	defer trainF.Close()
	evalF, err := os.Create(env.OutputPath("eval"))
	if err != nil {
		return err
	}
	defer evalF.Close()
	train, eval := artifacts.NewRecordWriter(trainF), artifacts.NewRecordWriter(evalF)
	side := map[int]bool{} // group index -> eval
	for i, r := range recs {
		e := isEval(i)
		if prev, ok := side[recGroup[i]]; ok && prev != e {
			// Units are unions of whole groups, so this cannot happen; the
			// check guards the invariant the stage exists for.
			return fmt.Errorf("group %q is on both sides of the split", groups[recGroup[i]])
		}
		side[recGroup[i]] = e
		w := train
		if e {
			w = eval
		}
		if err := w.Write(r.Record); err != nil {
			return err
		}
		rep.count(r.MetaString("source"), groups[recGroup[i]], e)
	}
	for _, e := range side {
		if e {
			rep.EvalGroups++
		} else {
			rep.TrainGroups++
		}
	}
	for _, f := range []interface{ Flush() error }{train, eval} {
		if err := f.Flush(); err != nil {
			return err
		}
	}
	if err := trainF.Close(); err != nil {
		return err
	}
	if err := evalF.Close(); err != nil {
		return err
	}
	return rep.write(env.OutputPath("report"))
}
