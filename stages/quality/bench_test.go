package quality

import (
	"os"
	"testing"
)

// BenchmarkQuality runs the stage on 100,000 synthetic records (60% chat,
// 40% FIM) holding 5,000 planted near-duplicate pairs and 2,500 far pairs,
// end to end (read, check, exact dedupe, MinHash LSH, write), and reports
// records/s with the near-duplicate recall and false-positive rates. The
// peer in the same run is the stage with near_dup = "off", which shows
// what near-duplicate detection costs.
//
//	go test ./stages/quality -run '^$' -bench Quality -benchtime 1x
func BenchmarkQuality(b *testing.B) {
	n := 100000
	if testing.Short() {
		n = 10000
	}
	c := makeCorpus(n, n/20, n/40, 2024)
	path := writeCorpus(b, b.TempDir(), c.recs)
	st, _ := os.Stat(path)
	for _, mode := range []string{"drop", "off"} {
		b.Run("near_dup="+mode, func(b *testing.B) {
			s := decode(b, "max_tokens = 0\nnear_dup = \""+mode+"\"\n")
			var out map[string][]byte
			b.SetBytes(st.Size())
			for b.Loop() {
				out = run(b, s, 2, path)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
			if mode == "drop" {
				sc := score(b, c, out["rejected"], &s.cfg)
				b.ReportMetric(sc.recall, "recall")
				b.ReportMetric(sc.farMerged, "far-merged")
				b.ReportMetric(sc.unrelatedFP, "unrelated-FP")
				b.Logf("%d records; %d near pairs (J>=0.75) recall %.4f; %d far pairs (J<0.6) merged %.4f; unrelated records dropped %.5f",
					n, sc.nearPairs, sc.recall, sc.farPairs, sc.farMerged, sc.unrelatedFP)
			}
		})
	}
}
