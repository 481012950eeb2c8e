package codefim

import (
	"encoding/binary"
	"sort"
	"strings"

	"github.com/pipeml/pipe/artifacts"
	"github.com/zeebo/blake3"
)

// tokenCounter is what the stage needs of *tokenizer.Tokenizer.
type tokenCounter interface {
	Count(text string) int
	EncodeRecord(rec *artifacts.Record, trainOnAll bool) ([]int32, []bool, error)
}

// Qwen2.5-Coder special tokens used by the FIM formats.
const (
	fimPrefix  = "<|fim_prefix|>"
	fimSuffix  = "<|fim_suffix|>"
	fimMiddle  = "<|fim_middle|>"
	endOfText  = "<|endoftext|>"
	repoNameTk = "<|repo_name|>"
	fileSepTk  = "<|file_sep|>"
	fillMarker = "<FILL>"
)

// controlTokens are the Qwen2.5 control tokens of the `<|...|>` family. A
// file that contains one as text is skipped: the tokenizer would read it
// as the control token and corrupt the example's structure.
var controlTokens = []string{
	"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
	"<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
	"<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
	"<|image_pad|>", "<|video_pad|>", "<|fim_prefix|>", "<|fim_middle|>",
	"<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
}

// skipSpecial is the report's reason for files holding control tokens.
const skipSpecial = "special_tokens"

// hasControlToken reports whether content holds a control token as text
// (or, for the chat form, the <FILL> marker).
func hasControlToken(content string, chat bool) bool {
	if chat && strings.Contains(content, fillMarker) {
		return true
	}
	if !strings.Contains(content, "<|") {
		return false
	}
	for _, t := range controlTokens {
		if strings.Contains(content, t) {
			return true
		}
	}
	return false
}

// rng is SplitMix64: tiny, fast and, unlike math/rand, fixed forever, so
// the samples of a file never change with the Go version.
type rng struct{ s uint64 }

func newRNG(seed int64, content []byte) *rng {
	h := blake3.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write(content)
	sum := h.Sum(nil)
	return &rng{s: binary.LittleEndian.Uint64(sum[:8])}
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a number in [0, n); n must be positive.
func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

// float returns a number in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// sampleOptions are the sampling parameters.
type sampleOptions struct {
	perFile    int
	maxLen     int
	middleMin  int
	middleMax  int
	syntaxFrac float64
	seed       int64
	render     renderOptions
}

// renderOptions say how an example is written.
type renderOptions struct {
	chat        bool
	repoContext bool
}

// fileInfo names the file being sampled.
type fileInfo struct {
	repo, path, language string
}

// sample is one chosen example before rendering.
type sample struct {
	prefixStart, middleStart, middleEnd, suffixEnd int
	kind                                           string
	tokens                                         int
	rec                                            *artifacts.Record
}

// sampler draws FIM examples from one file.
type sampler struct {
	src   string
	lines []int // start offset of each line, then len(src)
	ltok  []int // token count of each whole line; -1 until counted
	tok   tokenCounter
	opt   *sampleOptions
	file  fileInfo
	rng   *rng
	cands []span // Go syntax candidates within the middle size range
}

// maxAttempts bounds the draws per wanted sample.
const maxAttempts = 12

// sampleFile draws up to opt.perFile distinct examples from src. The
// draws depend only on opt.seed and the file's bytes (and, through the
// rendering, on its repository name and path).
func sampleFile(src string, tok tokenCounter, opt *sampleOptions, file fileInfo) ([]sample, error) {
	s := &sampler{src: src, tok: tok, opt: opt, file: file, rng: newRNG(opt.seed, []byte(src))}
	s.lines = lineStarts(src)
	s.ltok = make([]int, len(s.lines)-1)
	for i := range s.ltok {
		s.ltok[i] = -1
	}
	if file.language == "go" && opt.syntaxFrac > 0 {
		for _, c := range goCandidates(src) {
			// A token is at least one byte; more than 16 bytes a token is
			// rare even for runs of blanks.
			if n := c.end - c.start; n >= opt.middleMin && n <= 16*opt.middleMax {
				s.cands = append(s.cands, c)
			}
		}
	}
	overhead, err := s.overhead()
	if err != nil {
		return nil, err
	}
	var out []sample
	seen := map[[2]int]bool{}
	for attempt := 0; len(out) < opt.perFile && attempt < maxAttempts*opt.perFile; attempt++ {
		var m span
		var ok bool
		if len(s.cands) > 0 && s.rng.float() < opt.syntaxFrac {
			m, ok = s.syntaxMiddle()
		} else {
			m, ok = s.lineMiddle()
		}
		if !ok || seen[[2]int{m.start, m.end}] {
			continue
		}
		smp, ok, err := s.window(m, overhead)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		seen[[2]int{m.start, m.end}] = true
		out = append(out, smp)
	}
	return out, nil
}

// lineStarts returns the offset of each line's first byte, then len(src).
func lineStarts(src string) []int {
	starts := []int{0}
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' && i+1 < len(src) {
			starts = append(starts, i+1)
		}
	}
	return append(starts, len(src))
}

// lineTokens returns the token count of line i, counting it on first use.
func (s *sampler) lineTokens(i int) int {
	if s.ltok[i] < 0 {
		s.ltok[i] = s.tok.Count(s.src[s.lines[i]:s.lines[i+1]])
	}
	return s.ltok[i]
}

// lineOf returns the index of the line holding offset off.
func (s *sampler) lineOf(off int) int {
	return sort.Search(len(s.lines)-1, func(i int) bool { return s.lines[i+1] > off })
}

// overhead is the token count of an example with an empty prefix,
// middle and suffix: special tokens, repository context, chat template.
func (s *sampler) overhead() (int, error) {
	ids, _, err := s.tok.EncodeRecord(s.render("", "", ""), false)
	return len(ids), err
}

// lineMiddle draws whole lines: a random non-blank first line and a
// random target size in [middleMin, middleMax] tokens.
func (s *sampler) lineMiddle() (span, bool) {
	n := len(s.lines) - 1
	first := s.rng.intn(n)
	if strings.TrimSpace(s.src[s.lines[first]:s.lines[first+1]]) == "" {
		return span{}, false
	}
	target := s.opt.middleMin + s.rng.intn(s.opt.middleMax-s.opt.middleMin+1)
	tokens, last := 0, first
	for ; last < n && tokens < target; last++ {
		t := s.lineTokens(last)
		if tokens+t > s.opt.middleMax {
			break
		}
		tokens += t
	}
	if tokens < s.opt.middleMin {
		return span{}, false
	}
	return span{s.lines[first], s.lines[last], boundaryLine}, true
}

// syntaxMiddle draws one Go syntax candidate.
func (s *sampler) syntaxMiddle() (span, bool) {
	// window checks the size in tokens.
	return s.cands[s.rng.intn(len(s.cands))], true
}

// window grows a prefix and a suffix around middle m, whole lines at a
// time, until the example would exceed maxLen tokens; the prefix gets
// half the room first, the suffix what remains, then the prefix the rest.
// It checks the final example's exact length and trims lines while it is
// too long.
func (s *sampler) window(m span, overhead int) (sample, bool, error) {
	mid := s.src[m.start:m.end]
	// Line counts add up to a little more than the count of the joined
	// text (blank lines merge), so check the middle's exact size.
	midTokens := s.tok.Count(mid)
	if midTokens < s.opt.middleMin || midTokens > s.opt.middleMax {
		return sample{}, false, nil
	}
	room := s.opt.maxLen - overhead - midTokens
	// The partial lines around a middle that does not start or end at a
	// line boundary belong to the example whatever the room.
	ml := s.lineOf(m.start)
	ps := s.lines[ml]
	if ps < m.start {
		room -= s.tok.Count(s.src[ps:m.start])
	}
	se := m.end
	el := s.lineOf(m.end) // the first line not entirely before m.end
	if m.end < len(s.src) && s.lines[el] < m.end {
		se = s.lines[el+1]
		room -= s.tok.Count(s.src[m.end:se])
		el++
	}
	if room < 0 {
		return sample{}, false, nil
	}
	up, down := ml, el // next lines to add: up-1 above, down below
	used := 0
	grow := func(budget int, above bool) {
		for {
			if above {
				if up == 0 || used+s.lineTokens(up-1) > budget {
					return
				}
				up--
				used += s.lineTokens(up)
			} else {
				if down >= len(s.lines)-1 || used+s.lineTokens(down) > budget {
					return
				}
				used += s.lineTokens(down)
				down++
			}
		}
	}
	grow(room/2, true)
	grow(room, false)
	grow(room, true)
	ps = min(ps, s.lines[up])
	se = max(se, s.lines[down])
	for {
		rec := s.render(s.src[ps:m.start], mid, s.src[m.end:se])
		ids, _, err := s.tok.EncodeRecord(rec, false)
		if err != nil {
			return sample{}, false, err
		}
		if len(ids) <= s.opt.maxLen {
			return sample{ps, m.start, m.end, se, m.kind, len(ids), rec}, true, nil
		}
		// Line counts add up to a little more than the count of the
		// joined text, so this is rare: drop a line from the longer side.
		switch {
		case m.start-ps >= se-m.end && ps < s.lines[ml]:
			ps = s.lines[s.lineOf(ps)+1]
		case se > m.end && s.lines[s.lineOf(se-1)] >= m.end:
			se = s.lines[s.lineOf(se-1)]
		case ps < s.lines[ml]:
			ps = s.lines[s.lineOf(ps)+1]
		default:
			return sample{}, false, nil
		}
	}
}

// render builds the record for one example.
func (s *sampler) render(prefix, middle, suffix string) *artifacts.Record {
	return renderExample(&s.opt.render, s.file, prefix, middle, suffix)
}

// renderExample builds the record for one example: Qwen2.5-Coder's PSM
// FIM form, optionally led by repository context, or the chat form with
// a <FILL> marker.
func renderExample(o *renderOptions, f fileInfo, prefix, middle, suffix string) *artifacts.Record {
	if o.chat {
		var b strings.Builder
		b.WriteString("Fill in the code at <FILL> in `")
		b.WriteString(f.path)
		b.WriteString("`")
		if o.repoContext {
			b.WriteString(" of the repository `")
			b.WriteString(f.repo)
			b.WriteString("`")
		}
		b.WriteString(". Reply with only the code that replaces <FILL>.\n\n```")
		b.WriteString(f.language)
		b.WriteString("\n")
		b.WriteString(prefix)
		b.WriteString(fillMarker)
		b.WriteString(suffix)
		if !strings.HasSuffix(suffix, "\n") {
			b.WriteString("\n")
		}
		b.WriteString("```")
		return &artifacts.Record{Messages: []artifacts.Message{
			{Role: "user", Content: b.String()},
			{Role: "assistant", Content: middle},
		}}
	}
	var b strings.Builder
	b.Grow(len(prefix) + len(suffix) + 64)
	if o.repoContext {
		b.WriteString(repoNameTk)
		b.WriteString(f.repo)
		b.WriteString("\n")
		b.WriteString(fileSepTk)
		b.WriteString(f.path)
		b.WriteString("\n")
	}
	b.WriteString(fimPrefix)
	b.WriteString(prefix)
	b.WriteString(fimSuffix)
	b.WriteString(suffix)
	b.WriteString(fimMiddle)
	return &artifacts.Record{Prompt: b.String(), Completion: middle + endOfText}
}

// finish attaches the meta of sample number i of file f.
func (smp *sample) finish(f fileInfo, i int) *artifacts.Record {
	rec := smp.rec
	rec.Meta = map[string]any{
		"source":       "fim:" + f.repo,
		"group":        f.repo + "/" + f.path,
		"repo":         f.repo,
		"path":         f.path,
		"language":     f.language,
		"boundary":     smp.kind,
		"sample":       i,
		"prefix_start": smp.prefixStart,
		"middle_start": smp.middleStart,
		"middle_end":   smp.middleEnd,
		"suffix_end":   smp.suffixEnd,
		"tokens":       smp.tokens,
	}
	return rec
}
