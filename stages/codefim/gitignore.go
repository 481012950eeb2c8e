package codefim

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"
)

// ignoreRule is one pattern line of a .gitignore file, compiled.
type ignoreRule struct {
	re      *regexp.Regexp
	negate  bool // "!pattern": re-include what an earlier rule excluded
	dirOnly bool // "pattern/": matches folders only
	// anchored rules match the path relative to the .gitignore's folder;
	// the others (no slash but a trailing one) match the base name at any
	// depth below it.
	anchored bool
}

// ignoreFile is the compiled content of one .gitignore (or
// .git/info/exclude), with the folder it applies to.
type ignoreFile struct {
	dir   string // slash-separated path relative to the repository root; "" for the root
	rules []ignoreRule
}

// parseIgnore compiles the lines of a .gitignore file following
// gitignore(5): blank lines and "#" comments are skipped, unescaped
// trailing spaces are dropped, "!" negates, a trailing "/" restricts a
// pattern to folders, a slash at the start or in the middle anchors it to
// the file's folder, "*", "?" and "[...]" do not match "/", and "**"
// matches any number of folders in "**/x", "x/**" and "x/**/y". Lines that
// cannot be compiled are ignored, as git ignores them.
func parseIgnore(dir string, content []byte) *ignoreFile {
	f := &ignoreFile{dir: dir}
	sc := bufio.NewScanner(bytes.NewReader(content))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if r, ok := compileIgnoreLine(sc.Text()); ok {
			f.rules = append(f.rules, r)
		}
	}
	return f
}

func compileIgnoreLine(line string) (ignoreRule, bool) {
	line = strings.TrimSuffix(line, "\r")
	if line == "" || line[0] == '#' {
		return ignoreRule{}, false
	}
	line = trimTrailingSpaces(line)
	if line == "" {
		return ignoreRule{}, false
	}
	var r ignoreRule
	if line[0] == '!' {
		r.negate = true
		line = line[1:]
	}
	if strings.HasSuffix(line, "/") && !strings.HasSuffix(line, "\\/") {
		r.dirOnly = true
		line = strings.TrimRight(line, "/")
	}
	if line == "" {
		return ignoreRule{}, false
	}
	if strings.Contains(line, "/") {
		r.anchored = true
		line = strings.TrimPrefix(line, "/")
	}
	expr, ok := globToRegexp(line)
	if !ok {
		return ignoreRule{}, false
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return ignoreRule{}, false
	}
	r.re = re
	return r, true
}

// trimTrailingSpaces drops trailing spaces unless the last one is escaped
// with a backslash.
func trimTrailingSpaces(s string) string {
	for len(s) > 0 && s[len(s)-1] == ' ' {
		if len(s) >= 2 && s[len(s)-2] == '\\' {
			// "\ " keeps the space; the backslash is an escape that
			// globToRegexp removes.
			return s
		}
		s = s[:len(s)-1]
	}
	return s
}

// globToRegexp turns a gitignore glob (without its leading "!" or
// trailing "/") into an anchored regular expression over slash-separated
// paths.
func globToRegexp(glob string) (string, bool) {
	segs := strings.Split(glob, "/")
	var b strings.Builder
	b.WriteString("^")
	joined := true // the next segment needs no "/" before it
	for i, seg := range segs {
		first, last := i == 0, i == len(segs)-1
		if seg == "**" {
			switch {
			case first && last:
				b.WriteString(".*")
			case first:
				b.WriteString("(?:.*/)?")
				joined = true
			case last:
				b.WriteString("/.*")
			default:
				b.WriteString("/(?:.*/)?")
				joined = true
			}
			continue
		}
		if !joined {
			b.WriteString("/")
		}
		joined = false
		if !segmentToRegexp(&b, seg) {
			return "", false
		}
	}
	b.WriteString("$")
	return b.String(), true
}

// segmentToRegexp writes the expression for one path segment: "*" and
// "?" never match "/", "[...]" is a character class ("[!...]" negated),
// and a backslash quotes the next character.
func segmentToRegexp(b *strings.Builder, seg string) bool {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch c {
		case '*':
			for i+1 < len(seg) && seg[i+1] == '*' {
				i++
			}
			b.WriteString("[^/]*")
		case '?':
			b.WriteString("[^/]")
		case '\\':
			if i+1 == len(seg) {
				// A trailing backslash matches nothing in git.
				return false
			}
			i++
			b.WriteString(regexp.QuoteMeta(seg[i : i+1]))
		case '[':
			end, class := bracketClass(seg, i)
			if end < 0 {
				b.WriteString(`\[`)
				continue
			}
			b.WriteString(class)
			i = end
		default:
			b.WriteString(regexp.QuoteMeta(seg[i : i+1]))
		}
	}
	return true
}

// bracketClass parses the class starting at seg[i] == '[' and returns the
// index of its closing ']' and the equivalent regexp class, or -1 when
// the class is not closed.
func bracketClass(seg string, i int) (int, string) {
	j := i + 1
	var b strings.Builder
	b.WriteString("[")
	if j < len(seg) && (seg[j] == '!' || seg[j] == '^') {
		b.WriteString("^/")
		j++
	}
	start := j
	for ; j < len(seg); j++ {
		c := seg[j]
		switch {
		case c == ']' && j > start:
			b.WriteString("]")
			return j, b.String()
		case c == '[' && j+1 < len(seg) && seg[j+1] == ':':
			// A POSIX class such as [:alpha:]; regexp knows the same names.
			k := strings.Index(seg[j+2:], ":]")
			if k < 0 {
				return -1, ""
			}
			b.WriteString(seg[j : j+2+k+2])
			j += 2 + k + 1
		case c == '\\' && j+1 < len(seg):
			j++
			b.WriteString(regexp.QuoteMeta(seg[j : j+1]))
		case c == '-' && j > start && j+1 < len(seg) && seg[j+1] != ']':
			b.WriteString("-")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return -1, ""
}

// match reports whether rule r matches rel (relative to the rule's
// folder) and, if so, whether it ignores (true) or re-includes (false).
func (r *ignoreRule) match(rel string, isDir bool) (matched, ignore bool) {
	if r.dirOnly && !isDir {
		return false, false
	}
	target := rel
	if !r.anchored {
		if k := strings.LastIndexByte(rel, '/'); k >= 0 {
			target = rel[k+1:]
		}
	}
	if !r.re.MatchString(target) {
		return false, false
	}
	return true, !r.negate
}

// ignoreStack is the list of ignore files that apply in one folder, from
// the repository root down; later files and later lines take precedence.
type ignoreStack []*ignoreFile

// ignored reports whether path (slash-separated, relative to the
// repository root) is ignored. The walk calls it for every entry and
// prunes ignored folders, so, as in git, a file below an excluded folder
// cannot be re-included.
func (s ignoreStack) ignored(path string, isDir bool) bool {
	result := false
	for _, f := range s {
		rel := path
		if f.dir != "" {
			if !strings.HasPrefix(path, f.dir+"/") {
				continue
			}
			rel = path[len(f.dir)+1:]
		}
		for i := range f.rules {
			if m, ign := f.rules[i].match(rel, isDir); m {
				result = ign
			}
		}
	}
	return result
}
