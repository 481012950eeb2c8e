package eval

import (
	"math"
	"strconv"
)

// ReportFile is the name of the JSON report in the report folder.
const ReportFile = "eval_report.json"

// Report is eval_report.json. Every number depends only on the inputs and
// parameters (and the backend's arithmetic); timings are left out so that
// the file is the same on every run. Models lists the evaluated models in
// order: "base" first, then each adapter by name.
type Report struct {
	Model    string                 `json:"model"`
	Backend  string                 `json:"backend"`
	DType    string                 `json:"dtype"`
	Quant    string                 `json:"quantization"`
	Models   []string               `json:"models"`
	Adapters map[string]AdapterInfo `json:"adapters,omitempty"`
	Data     DataStats              `json:"data"`
	MaxLen   int                    `json:"max_len"`
	Loss     map[string]*LossTable  `json:"loss"`
	FIM      *FIMReport             `json:"fim,omitempty"`
	Chat     []ChatSample           `json:"chat_samples,omitempty"`
	Timing   map[string]*Throughput `json:"-"`
}

// AdapterInfo describes one evaluated adapter.
type AdapterInfo struct {
	Rank    int      `json:"r"`
	Alpha   float64  `json:"lora_alpha"`
	Targets []string `json:"target_modules"`
	// Base is the adapter's base_model_name_or_path.
	Base string `json:"base_model_name_or_path,omitempty"`
}

// LossStat is the token-weighted mean cross-entropy (nats per loss token)
// of a set of records, and its perplexity exp(loss).
type LossStat struct {
	Loss       float64 `json:"loss"`
	Perplexity float64 `json:"perplexity"`
	Tokens     int     `json:"tokens"`
	Examples   int     `json:"examples"`

	sum float64
}

func (s *LossStat) add(sum float64, tokens int) {
	s.sum += sum
	s.Tokens += tokens
	s.Examples++
}

func (s *LossStat) finish() {
	if s.Tokens > 0 {
		s.Loss = s.sum / float64(s.Tokens)
		s.Perplexity = math.Exp(s.Loss)
		if math.IsInf(s.Perplexity, 0) {
			s.Perplexity = math.MaxFloat64
		}
	}
}

// LossTable is one model's loss over all records, by record kind (chat,
// fim, completion) and by meta.source.
type LossTable struct {
	All      *LossStat            `json:"all"`
	ByKind   map[string]*LossStat `json:"by_kind"`
	BySource map[string]*LossStat `json:"by_source"`
}

func newLossTable() *LossTable {
	return &LossTable{All: &LossStat{}, ByKind: map[string]*LossStat{}, BySource: map[string]*LossStat{}}
}

func (t *LossTable) add(kind, source string, sum float64, tokens int) {
	t.All.add(sum, tokens)
	for _, x := range []struct {
		m map[string]*LossStat
		k string
	}{{t.ByKind, kind}, {t.BySource, source}} {
		s := x.m[x.k]
		if s == nil {
			s = &LossStat{}
			x.m[x.k] = s
		}
		s.add(sum, tokens)
	}
}

func (t *LossTable) finish() {
	t.All.finish()
	for _, s := range t.ByKind {
		s.finish()
	}
	for _, s := range t.BySource {
		s.finish()
	}
}

// FIMReport holds the infilling results.
type FIMReport struct {
	// Examples is the number of infilling tasks scored; Skipped counts the
	// ones left out, by reason ("too_long": prompt plus max_new_tokens
	// exceeds max_len; "limit": beyond max_examples).
	Examples     int                   `json:"examples"`
	Skipped      map[string]int        `json:"skipped,omitempty"`
	MaxNewTokens int                   `json:"max_new_tokens"`
	Scores       map[string]*FIMScores `json:"scores"`
	// LengthBuckets lists the keys of FIMScores.ByLength in order.
	LengthBuckets []string    `json:"length_buckets"`
	Samples       []FIMSample `json:"samples"`
}

// FIMScores are one model's infilling scores: shares of tasks (0 to 1)
// whose first line or whole middle matched exactly, the mean edit
// similarity, and the share of generations that ended with a stop token
// rather than at max_new_tokens.
type FIMScores struct {
	Examples       int     `json:"examples"`
	ExactFirstLine float64 `json:"exact_first_line"`
	ExactMiddle    float64 `json:"exact_middle"`
	EditSimilarity float64 `json:"edit_similarity"`
	Stopped        float64 `json:"stopped"`
	// GeneratedTokens is the number of tokens generated, stop tokens
	// included.
	GeneratedTokens int `json:"generated_tokens"`
	// BySource and ByLength split the same scores by meta.source and by
	// the reference middle's length in tokens (keys like "017-032").
	BySource map[string]*FIMScores `json:"by_source,omitempty"`
	ByLength map[string]*FIMScores `json:"by_length,omitempty"`

	firstLine, middle, stopped int
	editSum                    float64
}

func (s *FIMScores) add(r FIMResult) {
	s.Examples++
	if r.ExactFirstLine {
		s.firstLine++
	}
	if r.ExactMiddle {
		s.middle++
	}
	if r.Stopped {
		s.stopped++
	}
	s.editSum += r.EditSimilarity
	s.GeneratedTokens += r.Tokens
}

func (s *FIMScores) finish() {
	if s.Examples > 0 {
		n := float64(s.Examples)
		s.ExactFirstLine = float64(s.firstLine) / n
		s.ExactMiddle = float64(s.middle) / n
		s.Stopped = float64(s.stopped) / n
		s.EditSimilarity = s.editSum / n
	}
	for _, m := range []map[string]*FIMScores{s.BySource, s.ByLength} {
		for _, x := range m {
			x.finish()
		}
	}
}

// FIMSample is one task with each model's completion.
type FIMSample struct {
	Where        string               `json:"where"`
	Source       string               `json:"source"`
	Path         string               `json:"path,omitempty"`
	MiddleTokens int                  `json:"middle_tokens"`
	Reference    string               `json:"reference"`
	Results      map[string]FIMResult `json:"results"`
}

// FIMResult is one model's completion of one task and its scores.
type FIMResult struct {
	Output         string  `json:"output"`
	Tokens         int     `json:"tokens"`
	Stopped        bool    `json:"stopped"`
	ExactFirstLine bool    `json:"exact_first_line"`
	ExactMiddle    bool    `json:"exact_middle"`
	EditSimilarity float64 `json:"edit_similarity"`
}

// ChatSample is one prompt and each model's answer.
type ChatSample struct {
	Where   string            `json:"where,omitempty"`
	System  string            `json:"system,omitempty"`
	Prompt  string            `json:"prompt"`
	Answers map[string]string `json:"answers"`
}

// Throughput is one model's generation speed (kept out of the JSON
// report, which must not depend on timing).
type Throughput struct {
	Tokens  int
	Seconds float64
}

// TokensPerSecond is Tokens/Seconds (0 when nothing was timed).
func (t *Throughput) TokensPerSecond() float64 {
	if t == nil || t.Seconds <= 0 {
		return 0
	}
	return float64(t.Tokens) / t.Seconds
}

// lengthBuckets are the upper bounds of the middle-length buckets.
var lengthBuckets = []int{16, 32, 64, 128, 256}

// lengthBucket returns the bucket label of a middle of n tokens.
func lengthBucket(n int) string {
	lo := 1
	for _, hi := range lengthBuckets {
		if n <= hi {
			return pad3(lo) + "-" + pad3(hi)
		}
		lo = hi + 1
	}
	return pad3(lo) + "+"
}

// allLengthBuckets lists every label in order.
func allLengthBuckets() []string {
	var out []string
	lo := 1
	for _, hi := range lengthBuckets {
		out = append(out, pad3(lo)+"-"+pad3(hi))
		lo = hi + 1
	}
	return append(out, pad3(lo)+"+")
}

func pad3(n int) string {
	s := strconv.Itoa(n)
	for len(s) < 3 {
		s = "0" + s
	}
	return s
}
