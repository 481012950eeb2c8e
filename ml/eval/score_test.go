package eval

import (
	"math"
	"testing"
)

func TestLevenshtein(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"", "abc", 3},
		{"kitten", "sitting", 3}, // k→s, e→i, +g
		{"flaw", "lawn", 2},      // -f, +n
		{"gumbo", "gambol", 2},   // u→a, +l
		{"book", "back", 2},
		{"abc", "abc", 0},
		{"héllo", "hello", 1},      // é is one rune (two bytes)
		{"日本語", "日本", 1},           // three-byte runes
		{"x := 1\n", "x = 1\n", 1}, // the ':' goes
	} {
		if got := Levenshtein(c.a, c.b); got != c.want {
			t.Errorf("Levenshtein(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := Levenshtein(c.b, c.a); got != c.want {
			t.Errorf("Levenshtein(%q, %q) = %d, want %d (symmetry)", c.b, c.a, got, c.want)
		}
	}
}

func TestEditSimilarity(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want float64
	}{
		{"", "", 1},
		{"abc", "abc", 1},
		{"abc", "", 0},
		{"abc", "xyz", 0},
		{"kitten", "sitting", 1 - 3.0/7},
		{"héllo", "hello", 1 - 1.0/5}, // 5 runes each, not 6 bytes
		{"return nil", "return err", 1 - 3.0/10},
	} {
		if got := EditSimilarity(c.a, c.b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("EditSimilarity(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestExactMatch(t *testing.T) {
	for _, c := range []struct {
		got, want         string
		firstLine, middle bool
	}{
		{"\treturn x\n}\n", "\treturn x\n}\n", true, true},
		{"\treturn x\n}", "\treturn x\n}\n", true, true},          // stopped before the final newline
		{"\treturn x\r\n}\r\n", "\treturn x\n}\n", true, true},    // CRLF
		{"\treturn x  \nfoo()\n", "\treturn x\n}\n", true, false}, // trailing spaces on the first line
		{"\n\n\treturn x\n", "\treturn x\n}\n", true, false},      // blank lines before the first line
		{"return x\n}\n", "\treturn x\n}\n", false, false},        // indentation matters
		{"\treturn y\n}\n", "\treturn x\n}\n", false, false},
		{"", "\n", true, true},
		{"", "x\n", false, false},
	} {
		if got := ExactFirstLine(c.got, c.want); got != c.firstLine {
			t.Errorf("ExactFirstLine(%q, %q) = %v, want %v", c.got, c.want, got, c.firstLine)
		}
		if got := ExactMiddle(c.got, c.want); got != c.middle {
			t.Errorf("ExactMiddle(%q, %q) = %v, want %v", c.got, c.want, got, c.middle)
		}
	}
}
