package quality

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"

	"github.com/pipeml/pipe/stages/dedupe"
	"github.com/pipeml/pipe/stages/recordset"
)

// maxMalformed bounds how many malformed lines the report lists (all are
// counted).
const maxMalformed = 100

// recordID names a record in the report: where it was read and its
// provenance. It never holds record content.
type recordID struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Source string `json:"source,omitempty"`
	Group  string `json:"group,omitempty"`
}

func (r recordID) String() string { return fmt.Sprintf("%s:%d", r.File, r.Line) }

type sourceCounts struct {
	In      int            `json:"in"`
	Out     int            `json:"out"`
	Dropped map[string]int `json:"dropped"`
}

type member struct {
	recordID
	// Similarity is the estimated Jaccard similarity to the representative.
	Similarity float64 `json:"similarity"`
}

type clusterReport struct {
	Size           int      `json:"size"`
	Representative recordID `json:"representative"`
	Members        []member `json:"members"`
}

type nearDupReport struct {
	Mode      string        `json:"mode"`
	Params    dedupe.Params `json:"params"`
	Threshold float64       `json:"threshold"`
	// Compared is the number of records sketched; Unsketched those of
	// fewer words than a shingle, which only exact dedupe sees.
	Compared   int `json:"compared"`
	Unsketched int `json:"unsketched"`
	// Edges is the number of verified near-duplicate pairs.
	Edges             int             `json:"edges"`
	Clusters          int             `json:"clusters"`
	RecordsInClusters int             `json:"records_in_clusters"`
	SizeHistogram     map[string]int  `json:"size_histogram"`
	Largest           []clusterReport `json:"largest"`
}

type report struct {
	cfg   *config
	files []recordset.File

	RecordsIn      int                      `json:"records_in"`
	RecordsOut     int                      `json:"records_out"`
	Dropped        map[string]int           `json:"dropped"`
	BySource       map[string]*sourceCounts `json:"by_source"`
	MalformedLines int                      `json:"malformed_lines"`
	Malformed      []recordset.BadLine      `json:"malformed"`
	// SecretKinds counts findings by kind in the records the secret gate
	// dropped.
	SecretKinds map[string]int `json:"secret_kinds"`
	// Tokenized is how many records were run through the tokenizer (the
	// others were below max_tokens by a byte bound).
	Tokenized int            `json:"tokenized"`
	NearDup   *nearDupReport `json:"near_duplicates,omitempty"`

	nearDupEdges int
}

func newReport(c *config, files []recordset.File, in *recordset.Result) *report {
	r := &report{
		cfg:            c,
		files:          files,
		Dropped:        map[string]int{},
		BySource:       map[string]*sourceCounts{},
		SecretKinds:    map[string]int{},
		MalformedLines: len(in.Bad),
		Malformed:      in.Bad[:min(len(in.Bad), maxMalformed)],
	}
	if r.Malformed == nil {
		r.Malformed = []recordset.BadLine{}
	}
	return r
}

func (r *report) id(it *item) recordID {
	return recordID{
		File:   r.files[it.File].Name,
		Line:   it.Line,
		Source: it.Record.MetaString("source"),
		Group:  it.Record.MetaString("group"),
	}
}

// count adds one record's outcome.
func (r *report) count(it *item) {
	src := it.Record.MetaString("source")
	sc := r.BySource[src]
	if sc == nil {
		sc = &sourceCounts{Dropped: map[string]int{}}
		r.BySource[src] = sc
	}
	r.RecordsIn++
	sc.In++
	if it.tokens >= 0 {
		r.Tokenized++
	}
	if it.reason == "" {
		r.RecordsOut++
		sc.Out++
		return
	}
	r.Dropped[it.reason]++
	sc.Dropped[it.reason]++
	for k, n := range it.secrets {
		r.SecretKinds[k] += n
	}
}

type cluster struct {
	rep     int
	members []int     // item indexes in input order, the representative first
	sims    []float64 // similarity to the representative of members[1:]
}

func (r *report) setClusters(cs []*cluster, items []item, compared, unsketched int) {
	c := r.cfg
	nd := &nearDupReport{
		Mode:          c.NearDup,
		Params:        c.minhash(),
		Threshold:     c.NearDupThreshold,
		Compared:      compared,
		Unsketched:    unsketched,
		Edges:         r.nearDupEdges,
		Clusters:      len(cs),
		SizeHistogram: map[string]int{},
		Largest:       []clusterReport{},
	}
	sort.Slice(cs, func(i, j int) bool {
		if len(cs[i].members) != len(cs[j].members) {
			return len(cs[i].members) > len(cs[j].members)
		}
		return cs[i].rep < cs[j].rep
	})
	for _, cl := range cs {
		nd.RecordsInClusters += len(cl.members)
		nd.SizeHistogram[sizeBucket(len(cl.members))]++
	}
	for _, cl := range cs[:min(len(cs), c.ReportClusters)] {
		cr := clusterReport{Size: len(cl.members), Representative: r.id(&items[cl.rep]), Members: []member{}}
		for k, i := range cl.members[1:] {
			if k >= c.ClusterExamples {
				break
			}
			cr.Members = append(cr.Members, member{recordID: r.id(&items[i]), Similarity: cl.sims[k]})
		}
		nd.Largest = append(nd.Largest, cr)
	}
	r.NearDup = nd
}

// sizeBucket names a cluster size for the histogram: exact up to 10, then
// powers of two.
func sizeBucket(n int) string {
	if n <= 10 {
		return strconv.Itoa(n)
	}
	lo := 16
	for lo*2 <= n {
		lo *= 2
	}
	if lo > n {
		return "11-15"
	}
	return fmt.Sprintf("%d-%d", lo, 2*lo-1)
}

func (r *report) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o666)
}

func (r *report) summary() map[string]any {
	s := map[string]any{
		"records_in":      r.RecordsIn,
		"records_out":     r.RecordsOut,
		"dropped":         r.Dropped,
		"malformed_lines": r.MalformedLines,
	}
	if r.NearDup != nil {
		s["near_dup_clusters"] = r.NearDup.Clusters
	}
	return s
}
