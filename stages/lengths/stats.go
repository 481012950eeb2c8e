package lengths

import (
	"math"
	"slices"
)

// Stats summarises the token lengths of a set of records.
type Stats struct {
	Count int `json:"count"`
	// Tokens is the sum of all lengths.
	Tokens int64   `json:"tokens"`
	Min    int     `json:"min"`
	Max    int     `json:"max"`
	Mean   float64 `json:"mean"`
	// P50..P99 are nearest-rank percentiles: the smallest length such
	// that at least that share of the records are no longer.
	P50 int `json:"p50"`
	P90 int `json:"p90"`
	P95 int `json:"p95"`
	P99 int `json:"p99"`
}

// computeStats summarises lengths, which it sorts in place.
func computeStats(lengths []int) Stats {
	if len(lengths) == 0 {
		return Stats{}
	}
	slices.Sort(lengths)
	var sum int64
	for _, l := range lengths {
		sum += int64(l)
	}
	return Stats{
		Count:  len(lengths),
		Tokens: sum,
		Min:    lengths[0],
		Max:    lengths[len(lengths)-1],
		// Rounded to 3 decimals so the JSON is short and stable.
		Mean: math.Round(float64(sum)/float64(len(lengths))*1000) / 1000,
		P50:  percentile(lengths, 0.50),
		P90:  percentile(lengths, 0.90),
		P95:  percentile(lengths, 0.95),
		P99:  percentile(lengths, 0.99),
	}
}

// percentile returns the nearest-rank percentile q (0 < q <= 1) of sorted:
// the element at rank ceil(q*n), the smallest value v such that at least
// a share q of the values are <= v.
func percentile(sorted []int, q float64) int {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// q*n in float can land a hair above an integer (0.95*100 is
	// 95.00000000000001); round to 1e-9 before taking the ceiling.
	r := int(math.Ceil(math.Round(q*float64(n)*1e9) / 1e9))
	r = min(max(r, 1), n)
	return sorted[r-1]
}

// maxLenFor returns the max_len that keeps a share keep of the records:
// the nearest-rank percentile keep of the sorted lengths, rounded up to a
// multiple of multiple (so a padded batch of that length fits hardware
// tiles). Every record at most that long is kept, and at least a share
// keep of them are.
func maxLenFor(sorted []int, keep float64, multiple int) int {
	p := percentile(sorted, keep)
	return (p + multiple - 1) / multiple * multiple
}

// keptShare is the share of sorted lengths that are <= maxLen.
func keptShare(sorted []int, maxLen int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	n, _ := slices.BinarySearch(sorted, maxLen+1)
	return math.Round(float64(n)/float64(len(sorted))*1e6) / 1e6
}
