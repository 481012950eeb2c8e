package eval

import "strings"

// Levenshtein returns the edit distance between a and b counted in runes
// (Unicode code points): the fewest insertions, deletions and
// substitutions of one rune that turn a into b. Invalid UTF-8 bytes count
// as one rune each (U+FFFD).
func Levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) < len(rb) {
		ra, rb = rb, ra
	}
	// One row of the dynamic programme, over the shorter string.
	row := make([]int, len(rb)+1)
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		diag := row[0] // d[i-1][j-1]
		row[0] = i
		for j := 1; j <= len(rb); j++ {
			up := row[j] // d[i-1][j]
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			row[j] = min(up+1, row[j-1]+1, diag+cost)
			diag = up
		}
	}
	return row[len(rb)]
}

// EditSimilarity is 1 - Levenshtein(a, b) / max(runes(a), runes(b)), in
// [0, 1]: 1 for equal strings (two empty strings included), 0 when no rune
// can be kept in place. Both are counted in runes, so a multi-byte
// character is one edit, as a reader sees it.
func EditSimilarity(a, b string) float64 {
	n := max(len([]rune(a)), len([]rune(b)))
	if n == 0 {
		return 1
	}
	return 1 - float64(Levenshtein(a, b))/float64(n)
}

// normalizeNewlines turns CRLF and lone CR into LF.
func normalizeNewlines(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// FirstLine returns the first non-blank line of s with trailing spaces and
// tabs removed (leading indentation kept: it is part of the code), or ""
// when s has none.
func FirstLine(s string) string {
	for line := range strings.SplitSeq(normalizeNewlines(s), "\n") {
		if t := strings.TrimRight(line, " \t"); strings.TrimSpace(t) != "" {
			return t
		}
	}
	return ""
}

// ExactFirstLine reports whether the first non-blank lines of got and want
// are equal (see FirstLine). Two completions without any non-blank line
// match.
func ExactFirstLine(got, want string) bool { return FirstLine(got) == FirstLine(want) }

// ExactMiddle reports whether got equals want up to line endings (CRLF as
// LF) and trailing whitespace at the very end: a model that stops before
// or after the final newline of the middle still matches.
func ExactMiddle(got, want string) bool {
	trim := func(s string) string { return strings.TrimRight(normalizeNewlines(s), " \t\n") }
	return trim(got) == trim(want)
}
