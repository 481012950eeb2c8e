package split

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"sort"

	"github.com/pipeml/pipe/stages/recordset"
)

const (
	maxMalformed = 100
	largestUnits = 10
)

type sourceCounts struct {
	In           int `json:"in"`
	Duplicates   int `json:"duplicates"`
	Train        int `json:"train"`
	Eval         int `json:"eval"`
	TrainGroups  int `json:"train_groups"`
	EvalGroups   int `json:"eval_groups"`
	trainGroupOf map[string]bool
	evalGroupOf  map[string]bool
}

type unitReport struct {
	Group   string `json:"group"`
	Groups  int    `json:"groups"`
	Records int    `json:"records"`
	Eval    bool   `json:"eval"`
}

type report struct {
	cfg *config

	RecordsIn      int                      `json:"records_in"`
	Duplicates     int                      `json:"duplicates"`
	Train          int                      `json:"train"`
	Eval           int                      `json:"eval"`
	TrainGroups    int                      `json:"train_groups"`
	EvalGroups     int                      `json:"eval_groups"`
	BySource       map[string]*sourceCounts `json:"by_source"`
	MalformedLines int                      `json:"malformed_lines"`
	Malformed      []recordset.BadLine      `json:"malformed"`
	// Units are sets of groups that share a side; a unit has several
	// groups when near-duplicates (NearDupPairs found here, ClusterTies
	// from meta.near_dup_cluster) tie them.
	Units        int     `json:"units"`
	MergedUnits  int     `json:"merged_units"`
	NearDupPairs int     `json:"near_dup_pairs"`
	ClusterTies  int     `json:"cluster_ties"`
	EvalFrac     float64 `json:"eval_frac"`
	// Threshold is where eval ends in the hash range, as a fraction:
	// eval_frac unless a bound applied (Bound names it).
	Threshold float64      `json:"threshold"`
	Bound     string       `json:"bound"`
	EvalUnits int          `json:"eval_units"`
	Largest   []unitReport `json:"largest_units"`
}

func newReport(c *config, bad []recordset.BadLine) *report {
	r := &report{
		cfg:            c,
		BySource:       map[string]*sourceCounts{},
		MalformedLines: len(bad),
		Malformed:      bad[:min(len(bad), maxMalformed)],
		EvalFrac:       c.EvalFrac,
	}
	if r.Malformed == nil {
		r.Malformed = []recordset.BadLine{}
	}
	return r
}

func (r *report) source(s string) *sourceCounts {
	sc := r.BySource[s]
	if sc == nil {
		sc = &sourceCounts{trainGroupOf: map[string]bool{}, evalGroupOf: map[string]bool{}}
		r.BySource[s] = sc
	}
	return sc
}

func (r *report) count(src, group string, eval bool) {
	sc := r.source(src)
	if eval {
		r.Eval++
		sc.Eval++
		sc.evalGroupOf[group] = true
	} else {
		r.Train++
		sc.Train++
		sc.trainGroupOf[group] = true
	}
}

func (r *report) setUnits(order []*unit, nEval int, bound string, frac float64) {
	r.Units = len(order)
	r.EvalUnits = nEval
	r.Bound = bound
	r.Threshold = frac
	if bound != "" {
		// The boundary lies between the last eval unit and the first
		// train unit; report the latter's position.
		r.Threshold = 1
		if nEval < len(order) {
			r.Threshold = math.Ldexp(float64(order[nEval].hash), -64)
		}
	}
	for _, u := range order {
		if u.groups > 1 {
			r.MergedUnits++
		}
	}
	// Largest units by records, ties in hash order.
	big := slices.Clone(order)
	sort.SliceStable(big, func(i, j int) bool { return big[i].records > big[j].records })
	r.Largest = []unitReport{}
	for _, u := range big[:min(len(big), largestUnits)] {
		r.Largest = append(r.Largest, unitReport{Group: u.key, Groups: u.groups, Records: u.records, Eval: u.eval})
	}
}

func (r *report) write(path string) error {
	for _, sc := range r.BySource {
		r.RecordsIn += sc.In
		sc.TrainGroups, sc.EvalGroups = len(sc.trainGroupOf), len(sc.evalGroupOf)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o666)
}

func (r *report) summary() map[string]any {
	return map[string]any{
		"records_in":      r.RecordsIn,
		"train":           r.Train,
		"eval":            r.Eval,
		"duplicates":      r.Duplicates,
		"train_groups":    r.TrainGroups,
		"eval_groups":     r.EvalGroups,
		"malformed_lines": r.MalformedLines,
	}
}
