package secrets

import (
	"regexp"
	"sort"
	"strings"
)

// Kind names a class of secret. Kinds are stable strings used as report
// keys and in redaction markers.
type Kind string

// The kinds of secret the detector knows.
const (
	PrivateKey   Kind = "private_key"
	AnthropicKey Kind = "anthropic_key"
	OpenAIKey    Kind = "openai_key"
	GitHubToken  Kind = "github_token"
	AWSAccessKey Kind = "aws_access_key"
	AWSSecretKey Kind = "aws_secret_key"
	GoogleKey    Kind = "google_key"
	JWT          Kind = "jwt"
	BearerToken  Kind = "bearer_token"
	URLPassword  Kind = "url_password"
	KeyValue     Kind = "key_value_secret"
	Email        Kind = "email"
	HomePath     Kind = "home_path"
)

// Finding is one secret found in a text: its kind and the byte range
// [Start, End) of the secret itself (for KEY=value and URL passwords only
// the value, for home paths only the user name). It deliberately holds no
// copy of the text.
type Finding struct {
	Kind       Kind
	Start, End int
}

// Options selects the optional detectors. The credential detectors are
// always on.
type Options struct {
	// Emails redacts e-mail addresses (except example.com/.org/.net,
	// GitHub noreply and Anthropic noreply addresses).
	Emails bool
	// HomePaths replaces the user name in /home/<name>, /Users/<name>,
	// C:\Users\<name> and Claude Code's encoded -home-<name>- folder
	// names with "user".
	HomePaths bool
}

// Detector finds secrets. It is safe for concurrent use.
type Detector struct {
	opts Options
}

// New returns a detector with the given options.
func New(opts Options) *Detector { return &Detector{opts: opts} }

var defaultDetector = New(Options{})

// Scan returns the credentials in text (no e-mails, no home paths), sorted
// by offset and non-overlapping. It is the gate other stages use: a text
// with no findings holds no secret this package knows.
func Scan(text string) []Finding { return defaultDetector.Scan(text) }

// priority orders kinds when two findings overlap: the more specific kind
// wins.
var priority = map[Kind]int{
	PrivateKey: 0, AnthropicKey: 1, OpenAIKey: 2, GitHubToken: 3,
	AWSAccessKey: 4, AWSSecretKey: 5, GoogleKey: 6, JWT: 7, BearerToken: 8,
	URLPassword: 9, KeyValue: 10, Email: 11, HomePath: 12,
}

type pattern struct {
	kind Kind
	// lits are the literals a match starts with (matched case-insensitively
	// when fold is set); the scanner finds them with strings.Index and
	// tries the ^-anchored expression only there, which is much faster
	// than an unanchored regular expression over the whole text.
	lits []string
	fold bool
	// word requires that the byte before the match is not a word byte.
	word  bool
	re    *regexp.Regexp
	group int // submatch holding the secret; 0 for the whole match
}

var patterns = []pattern{
	{AnthropicKey, []string{"sk-ant-"}, false, false, regexp.MustCompile(`^sk-ant-[a-z0-9]{2,12}-[A-Za-z0-9_\-]{20,}`), 0},
	{OpenAIKey, []string{"sk-"}, false, true, regexp.MustCompile(`^sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,}|[A-Za-z0-9]{32,})`), 0},
	{GitHubToken, []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}, false, true, regexp.MustCompile(`^(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{50,255})\b`), 0},
	{AWSAccessKey, []string{"AKIA", "ASIA", "ABIA", "ACCA", "AROA", "AIDA", "AGPA", "ANPA", "ANVA", "AIPA"}, false, true, regexp.MustCompile(`^[A-Z]{4}[A-Z0-9]{16}\b`), 0},
	{AWSSecretKey, []string{"aws"}, true, false, regexp.MustCompile(`^(?i)aws_?secret(?:_?access)?_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})\b`), 1},
	{GoogleKey, []string{"AIza", "GOCSPX-", "ya29."}, false, true, regexp.MustCompile(`^(?:AIza[0-9A-Za-z_\-]{35}|GOCSPX-[0-9A-Za-z_\-]{28}|ya29\.[0-9A-Za-z_\-]{20,})`), 0},
	{JWT, []string{"eyJ"}, false, true, regexp.MustCompile(`^eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}`), 0},
	{BearerToken, []string{"bearer"}, true, true, regexp.MustCompile(`^[Bb]earer\s+([A-Za-z0-9._~+/\-]{20,}=*)`), 1},
}

// urlRE matches from a URL's scheme; the scanner finds "://" and backs up
// over the scheme first.
var urlRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.\-]{1,20}://[^\s:/@"'<>]+:([^\s@/"'<>]+)@[^\s/@]`)

// emailRE matches an e-mail address from the start of its local part.
var emailRE = regexp.MustCompile(`^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b`)

// window bounds the text an anchored expression looks at.
const window = 16 << 10

func isWordByte(c byte) bool {
	return c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isSchemeByte(c byte) bool {
	return c == '+' || c == '.' || c == '-' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// anchored runs re at text[at:] and returns the range of submatch group.
func anchored(re *regexp.Regexp, text string, at, group int) (int, int, bool) {
	end := min(len(text), at+window)
	m := re.FindStringSubmatchIndex(text[at:end])
	if m == nil || m[2*group] < 0 {
		return 0, 0, false
	}
	return at + m[2*group], at + m[2*group+1], true
}

// indexAll calls f with every offset of lit in s.
func indexAll(s, lit string, f func(int)) {
	for off := 0; ; {
		i := strings.Index(s[off:], lit)
		if i < 0 {
			return
		}
		f(off + i)
		off += i + len(lit)
	}
}

// Scan returns the secrets in text, sorted by offset and non-overlapping.
func (d *Detector) Scan(text string) []Finding {
	var fs []Finding
	if strings.Contains(text, "PRIVATE KEY") {
		fs = appendPrivateKeys(fs, text)
	}
	var lower string
	for i := range patterns {
		p := &patterns[i]
		hay := text
		if p.fold {
			if lower == "" {
				lower = asciiLower(text)
			}
			hay = lower
		}
		for _, lit := range p.lits {
			indexAll(hay, lit, func(at int) {
				if p.word && at > 0 && isWordByte(text[at-1]) {
					return
				}
				s, e, ok := anchored(p.re, text, at, p.group)
				if !ok || (p.kind == BearerToken && isPlaceholder(text[s:e])) {
					return
				}
				fs = append(fs, Finding{p.kind, s, e})
			})
		}
	}
	indexAll(text, "://", func(at int) {
		s := at
		for s > 0 && isSchemeByte(text[s-1]) {
			s--
		}
		if s == at || (s > 0 && isWordByte(text[s-1])) {
			return
		}
		if ps, pe, ok := anchored(urlRE, text, s, 1); ok && !isPlaceholder(text[ps:pe]) && !nonSecretValues[asciiLower(text[ps:pe])] {
			fs = append(fs, Finding{URLPassword, ps, pe})
		}
	})
	fs = appendKeyValues(fs, text)
	if d.opts.Emails {
		indexAll(text, "@", func(at int) {
			s := at
			for s > 0 && isEmailLocalByte(text[s-1]) {
				s--
			}
			if s == at || (s > 0 && (text[s-1] == ':' || text[s-1] == '/')) {
				return // empty, or the user info of a URL
			}
			if _, e, ok := anchored(emailRE, text, s, 0); ok && !ignoredEmail(text[s:e]) {
				fs = append(fs, Finding{Email, s, e})
			}
		})
	}
	if d.opts.HomePaths {
		for _, lit := range []string{"/home/", "/Users/", "\\Users\\", "-home-", "-Users-"} {
			indexAll(text, lit, func(at int) {
				s := at + len(lit)
				for s < len(text) && text[s] == '\\' {
					s++ // C:\\Users\\name in escaped form
				}
				e := s
				encoded := lit[0] == '-'
				for e < len(text) && isUserByte(text[e], encoded) {
					e++
				}
				if e == s || ignoredUser(text[s:e]) {
					return
				}
				if encoded && (e >= len(text) || text[e] != '-') {
					return
				}
				fs = append(fs, Finding{HomePath, s, e})
			})
		}
	}
	return resolve(fs)
}

func isEmailLocalByte(c byte) bool {
	return isWordByte(c) || c == '.' || c == '%' || c == '+' || c == '-'
}

// isUserByte reports bytes of a user name in a home path. In Claude
// Code's encoded folder names (-home-bob-projects-x) a dash ends the name.
func isUserByte(c byte, encoded bool) bool {
	if encoded {
		return isWordByte(c) || c == '.'
	}
	switch c {
	case '/', '\\', ' ', '\t', '\n', '\r', '"', '\'', '<', '>', ':', ';', ',', '*', '?', '|', '`', ')', '(':
		return false
	}
	return true
}

// resolve sorts findings and drops those overlapping an earlier one; at
// the same start the more specific kind, then the longer one, wins.
func resolve(fs []Finding) []Finding {
	if len(fs) < 2 {
		return fs
	}
	sort.Slice(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Start != b.Start {
			return a.Start < b.Start
		}
		if priority[a.Kind] != priority[b.Kind] {
			return priority[a.Kind] < priority[b.Kind]
		}
		return a.End > b.End
	})
	out := fs[:1]
	for _, f := range fs[1:] {
		last := &out[len(out)-1]
		if f.Start < last.End {
			// Overlap: a more specific kind found inside a generic one
			// (a GitHub token as a KEY=value value) takes its place.
			if priority[f.Kind] < priority[last.Kind] && f.End <= last.End && last.Kind == KeyValue {
				*last = Finding{f.Kind, last.Start, last.End}
			}
			continue
		}
		out = append(out, f)
	}
	return out
}

// Counts is the number of redactions by kind.
type Counts map[Kind]int

// Add adds o into c.
func (c Counts) Add(o Counts) {
	for k, n := range o {
		c[k] += n
	}
}

// Redact returns text with every finding replaced, and adds what it
// replaced to counts (which may be nil). Credentials become
// "[REDACTED:<kind>]"; home-path user names become "user".
func (d *Detector) Redact(text string, counts Counts) string {
	fs := d.Scan(text)
	if len(fs) == 0 {
		return text
	}
	var b strings.Builder
	b.Grow(len(text))
	pos := 0
	for _, f := range fs {
		b.WriteString(text[pos:f.Start])
		if f.Kind == HomePath {
			b.WriteString("user")
		} else {
			b.WriteString("[REDACTED:")
			b.WriteString(string(f.Kind))
			b.WriteString("]")
		}
		pos = f.End
		if counts != nil {
			counts[f.Kind]++
		}
	}
	b.WriteString(text[pos:])
	return b.String()
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

var (
	pemBeginRE = regexp.MustCompile(`-----BEGIN[A-Z0-9 ]* PRIVATE KEY(?: BLOCK)?-----`)
	pemEndRE   = regexp.MustCompile(`-----END[A-Z0-9 ]* PRIVATE KEY(?: BLOCK)?-----`)
)

// appendPrivateKeys adds PEM private key blocks, from BEGIN to END. A block
// without its END line (a truncated output) is redacted to the end of the
// text: what follows a BEGIN line is key material until proven otherwise.
func appendPrivateKeys(fs []Finding, text string) []Finding {
	pos := 0
	for {
		loc := pemBeginRE.FindStringIndex(text[pos:])
		if loc == nil {
			return fs
		}
		start := pos + loc[0]
		end := len(text)
		if e := pemEndRE.FindStringIndex(text[pos+loc[1]:]); e != nil {
			end = pos + loc[1] + e[1]
		}
		fs = append(fs, Finding{PrivateKey, start, end})
		pos = end
	}
}

// keyValueWords are the name fragments (lower case) that mark an
// assignment's value as a secret.
var keyValueWords = []string{"secret", "token", "password", "passwd", "pwd", "api_key", "apikey", "api-key", "access_key", "accesskey", "private_key", "credential", "auth_key"}

func isNameByte(c byte) bool {
	return c == '_' || c == '-' || c == '.' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// appendKeyValues adds the values of assignments such as API_TOKEN=...,
// password: "...", "client_secret": "..." whose name holds a secret word
// and whose value looks like a credential rather than code, a placeholder
// or a variable reference (see plausibleSecret).
func appendKeyValues(fs []Finding, text string) []Finding {
	lower := asciiLower(text)
	seen := -1 // end of the last name examined, to skip repeated words in one name
	var hits []int
	for _, w := range keyValueWords {
		for off := 0; ; {
			i := strings.Index(lower[off:], w)
			if i < 0 {
				break
			}
			hits = append(hits, off+i)
			off += i + len(w)
		}
	}
	if len(hits) == 0 {
		return fs
	}
	sort.Ints(hits)
	for _, h := range hits {
		// Expand to the whole name.
		ns := h
		for ns > 0 && isNameByte(text[ns-1]) {
			ns--
		}
		ne := h
		for ne < len(text) && isNameByte(text[ne]) {
			ne++
		}
		if ne <= seen {
			continue
		}
		seen = ne
		if s, e, ok := assignmentValue(text, ns, ne); ok {
			fs = append(fs, Finding{KeyValue, s, e})
		}
	}
	return fs
}

// assignmentValue parses `name["']? \s* (=|:) \s* value` after the name
// text[ns:ne] and returns the value's range when it is a plausible secret.
func assignmentValue(text string, ns, ne int) (int, int, bool) {
	name := text[ns:ne]
	if strings.HasSuffix(asciiLower(name), "tokens") {
		return 0, 0, false // max_tokens, num_tokens: counts, not credentials
	}
	i := ne
	if i < len(text) && (text[i] == '"' || text[i] == '\'') {
		i++
	}
	for i < len(text) && (text[i] == ' ' || text[i] == '\t') {
		i++
	}
	if i >= len(text) || (text[i] != '=' && text[i] != ':') {
		return 0, 0, false
	}
	sep := text[i]
	i++
	if i < len(text) && (text[i] == '=' || text[i] == '>' || (sep == ':' && text[i] == ':')) {
		return 0, 0, false // ==, =>, ::, := are code
	}
	if ns > 0 && text[ns-1] == ':' && sep == '=' {
		return 0, 0, false
	}
	for i < len(text) && (text[i] == ' ' || text[i] == '\t') {
		i++
	}
	if i >= len(text) {
		return 0, 0, false
	}
	var s, e int
	switch q := text[i]; q {
	case '"', '\'', '`':
		s = i + 1
		e = s
		for e < len(text) && text[e] != q && text[e] != '\n' {
			e++
		}
		if e >= len(text) || text[e] != q {
			return 0, 0, false
		}
	default:
		s = i
		e = s
		for e < len(text) && !strings.ContainsRune(" \t\r\n\"'`,;)}]>", rune(text[e])) {
			e++
		}
	}
	if !plausibleSecret(text[s:e]) {
		return 0, 0, false
	}
	return s, e, true
}

var (
	identRE  = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*$`)
	numberRE = regexp.MustCompile(`^-?(?:[0-9.,_]+|0[xX][0-9a-fA-F_]+)$`)
	wordsRE  = regexp.MustCompile(`^[a-z]+(?:[-_][a-z]+)*$`)
)

var nonSecretValues = map[string]bool{
	"true": true, "false": true, "null": true, "none": true, "nil": true,
	"undefined": true, "string": true, "number": true, "boolean": true,
	"required": true, "optional": true, "redacted": true, "password": true,
	"secret": true, "token": true, "changeme": true, "pass": true, "pwd": true,
}

// plausibleSecret reports whether an assignment's value looks like a real
// credential: at least 8 characters, not a placeholder, not a path or URL,
// not a number, not a variable reference or expression.
func plausibleSecret(v string) bool {
	if len(v) < 8 || len(v) > 200 {
		return false
	}
	if isPlaceholder(v) {
		return false
	}
	lv := strings.ToLower(v)
	if nonSecretValues[lv] || numberRE.MatchString(v) {
		return false
	}
	switch {
	case strings.HasPrefix(v, "/"), strings.HasPrefix(v, "./"), strings.HasPrefix(v, "../"),
		strings.HasPrefix(v, "~/"), strings.Contains(v, "://"):
		return false
	case strings.ContainsAny(v, "()[]{} "):
		return false // code: calls, indexing, blocks
	}
	if identRE.MatchString(v) {
		// An identifier or dotted reference (os.environ, config.apiKey,
		// MY_TOKEN) is code unless it mixes in digits the way generated
		// credentials do.
		if strings.Contains(v, ".") || !strings.ContainsAny(v, "0123456789") {
			return false
		}
	}
	if wordsRE.MatchString(v) {
		return false
	}
	return true
}

// isPlaceholder reports values written to stand for a secret rather than
// be one: $VAR, ${VAR}, <token>, {{ .Token }}, %s, ***, xxxx, "your-key".
func isPlaceholder(v string) bool {
	if v == "" {
		return true
	}
	switch v[0] {
	case '$', '<', '{', '%', '*', '&', '@', '#':
		return true
	}
	lv := strings.ToLower(v)
	for _, p := range []string{"xxxx", "***", "...", "redacted", "your_", "your-", "yourpassword", "placeholder", "example", "changeme", "<", "${", "{{"} {
		if strings.Contains(lv, p) {
			return true
		}
	}
	allSame := true
	for i := 1; i < len(v); i++ {
		if v[i] != v[0] {
			allSame = false
			break
		}
	}
	return allSame
}

func ignoredEmail(e string) bool {
	le := strings.ToLower(e)
	at := strings.LastIndexByte(le, '@')
	local, domain := le[:at], le[at+1:]
	switch {
	case local == "git", local == "noreply" && domain == "anthropic.com",
		strings.HasSuffix(domain, "users.noreply.github.com"),
		domain == "example.com", domain == "example.org", domain == "example.net",
		strings.HasSuffix(domain, ".example.com"):
		return true
	}
	return false
}

func ignoredUser(u string) bool {
	switch u {
	case "user", "USER", "username", "runner", "root", "shared", "Shared", "$USER", "~", ".", "..":
		return true
	}
	return strings.HasPrefix(u, "$") || strings.HasPrefix(u, "{") || strings.HasPrefix(u, "<")
}

// asciiLower lower-cases ASCII letters only, so byte offsets stay valid.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}
