package dedupe

import (
	"cmp"
	"context"
	"runtime"
	"slices"
	"sync"
)

// Edge is a verified near-duplicate pair, A < B.
type Edge struct {
	A, B int
	// Similarity is the sketch estimate of their Jaccard similarity.
	Similarity float64
}

// CandidateOptions tunes Candidates.
type CandidateOptions struct {
	// Threshold is the estimated Jaccard similarity a pair sharing a band
	// must reach to become an edge; 0 accepts every pair that shares a
	// band (BigCode's behaviour).
	Threshold float64
	// Skip, when set, excludes pairs (i < j) from becoming edges, for
	// example records of the same group.
	Skip func(i, j int) bool
	// Parallelism bounds the goroutines (one band at a time each).
	Parallelism int
}

// maxChecks bounds how many earlier members of a bucket a member is
// compared with, which keeps a huge bucket linear.
const maxChecks = 4

// Candidates returns the near-duplicate edges of s. Texts sharing a band
// key form a bucket; within a bucket (members in index order) each member
// is compared with the bucket's first member, then with its nearest
// predecessors, up to maxChecks comparisons, and linked to the first one
// that passes. Members linked this way chain every verified bucket into
// one component without comparing all pairs. The result is sorted by
// (A, B) and identical whatever the parallelism.
func Candidates(ctx context.Context, s *Sketches, opt CandidateOptions) ([]Edge, error) {
	par := opt.Parallelism
	if par < 1 {
		par = runtime.GOMAXPROCS(0)
	}
	perBand := make([][]Edge, s.Bands)
	bands := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(par, s.Bands); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entries := make([]bandEntry, 0, s.N)
			for band := range bands {
				perBand[band] = bandEdges(s, band, opt, entries[:0])
			}
		}()
	}
	for band := 0; band < s.Bands && ctx.Err() == nil; band++ {
		bands <- band
	}
	close(bands)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var all []Edge
	for _, e := range perBand {
		all = append(all, e...)
	}
	slices.SortFunc(all, func(x, y Edge) int {
		if c := cmp.Compare(x.A, y.A); c != 0 {
			return c
		}
		return cmp.Compare(x.B, y.B)
	})
	return slices.CompactFunc(all, func(x, y Edge) bool { return x.A == y.A && x.B == y.B }), nil
}

type bandEntry struct {
	key uint64
	idx int32
}

func bandEdges(s *Sketches, band int, opt CandidateOptions, entries []bandEntry) []Edge {
	for i := 0; i < s.N; i++ {
		if s.Shingles[i] > 0 {
			entries = append(entries, bandEntry{s.Band[i*s.Bands+band], int32(i)})
		}
	}
	slices.SortFunc(entries, func(x, y bandEntry) int {
		if c := cmp.Compare(x.key, y.key); c != 0 {
			return c
		}
		return cmp.Compare(x.idx, y.idx)
	})
	var edges []Edge
	for lo := 0; lo < len(entries); {
		hi := lo + 1
		for hi < len(entries) && entries[hi].key == entries[lo].key {
			hi++
		}
		run := entries[lo:hi]
		for j := 1; j < len(run); j++ {
			b := int(run[j].idx)
			for c := 0; c < maxChecks; c++ {
				// Try the first member, then the nearest predecessors.
				k := 0
				if c > 0 {
					if k = j - c; k <= 0 {
						break
					}
				}
				a := int(run[k].idx)
				if opt.Skip != nil && opt.Skip(a, b) {
					continue
				}
				sim := s.Similarity(a, b)
				if sim < opt.Threshold {
					continue
				}
				edges = append(edges, Edge{A: a, B: b, Similarity: sim})
				break
			}
		}
		lo = hi
	}
	return edges
}

// Components returns, for each of n nodes, the smallest node index of its
// connected component under edges. Taking the smallest index as the root
// makes the result independent of edge order.
func Components(n int, edges []Edge) []int {
	parent := make([]int, n)
	for i := range parent {
		parent[i] = i
	}
	find := func(x int) int {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	for _, e := range edges {
		ra, rb := find(e.A), find(e.B)
		if ra == rb {
			continue
		}
		if ra < rb {
			parent[rb] = ra
		} else {
			parent[ra] = rb
		}
	}
	root := make([]int, n)
	for i := range root {
		root[i] = find(i)
	}
	return root
}
