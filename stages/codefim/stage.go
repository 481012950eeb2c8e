package codefim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/tokenizer"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
)

// Definition is the `code_fim` stage kind.
var Definition = &stages.Definition{
	Name:    "code_fim",
	Version: "1",
	Doc:     doc + languageDoc(),
	Spec:    spec,
	Inputs: []stages.InputSpec{
		{Name: "repos", Doc: "Repository folders to extract from.", Required: true, List: true},
		{Name: "tokenizer", Doc: "A tokenizer folder (tokenizer.json); by default the Qwen2.5 tokenizer from the cache folder."},
	},
	Outputs: []stages.OutputSpec{
		{Name: "records", Doc: "FIM examples, one JSON record a line.", Kind: stages.File},
		{Name: "report", Doc: "Counts of files and examples (JSON).", Kind: stages.File},
	},
	New: newStage,
}

const doc = `Fill-in-the-middle examples from code repositories

Walks each repository of ` + "`repos`" + ` (one map item per source file, so a
changed file re-extracts only that file) and draws ` + "`per_file`" + ` examples
from every file it keeps. Each example is a middle span and the prefix and
suffix around it, whole lines, as much as fits in ` + "`max_len`" + ` tokens.

The walk honours .gitignore files at every level (negations, folder
patterns, "**") and .git/info/exclude, never enters .git, .hg, .svn or
.bzr, skips vendored folders (` + "`skip_dirs`" + `), lock files (go.sum,
package-lock.json, *.lock, ...), files larger than ` + "`max_file_bytes`" + `,
symbolic links and files whose language (from the extension) is not in
` + "`languages`" + `. After reading a file it skips binary files (a NUL byte or
invalid UTF-8), generated files ("Code generated ... DO NOT EDIT.",
"@generated", "auto-generated" in the first lines), minified files (a line
longer than ` + "`max_line_length`" + ` or a mean line length over
` + "`max_mean_line_length`" + `) and files that contain Qwen control tokens such
as <|endoftext|> as text.

Middles are whole lines in every language. In Go files a share of them
(` + "`syntax_frac`" + `) follows go/ast: one statement, a run of up to four
statements of one block, the inside of a block or function body, or a
whole function declaration, each widened to whole lines where it fills
them. Draws depend only on ` + "`seed`" + ` and the file's bytes.

Outputs: ` + "`records`" + ` (JSONL) and ` + "`report`" + ` (JSON counts).

Record forms (` + "`format`" + `):

- "fim": prompt ` + "`<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>`" + `
  and completion ` + "`{middle}<|endoftext|>`" + `, Qwen2.5-Coder's PSM form; with
  ` + "`repo_context`" + ` the prompt starts with
  ` + "`<|repo_name|>{repo}\\n<|file_sep|>{path}\\n`" + `.
- "chat": a <FILL> prompt for chat-style training, after the original
  pipeline's idea (its exact wording was not available): a user
  message "Fill in the code at <FILL> in ` + "`{path}`" + `. Reply with only the code
  that replaces <FILL>." followed by the prefix, <FILL> and the suffix in a
  fenced block tagged with the language, and an assistant message holding
  the middle. Files that contain "<FILL>" are skipped in this form.

meta: source ("fim:<repo>"), group ("<repo>/<path>"), repo, path, language,
boundary (line, stmt, stmts, block, func_body, func), sample (index in the
file), prefix_start, middle_start, middle_end, suffix_end (byte offsets in
the file) and tokens (the example's length). A repository's name is its
folder's base name; two repositories with the same name are an error.

Parameters:

- ` + "`per_file`" + ` (number, default 2): examples drawn per file (fewer when a
  file is too small to hold distinct middles).
- ` + "`seed`" + ` (number, default 0): changes every draw.
- ` + "`max_len`" + ` (number, default 1600): the most tokens of one example,
  prompt and completion together, special tokens and template included.
- ` + "`middle_min_tokens`" + ` (number, default 8) and ` + "`middle_max_tokens`" + `
  (number, default 256): the middle's size range in tokens.
- ` + "`syntax_frac`" + ` (number, default 0.5): the share of draws in Go files
  that use go/ast boundaries; the others use whole lines.
- ` + "`format`" + ` (string, default "fim"): "fim" or "chat".
- ` + "`repo_context`" + ` (bool, default false): lead FIM prompts with the
  repository name and file path.
- ` + "`languages`" + ` (list of strings, default: the programming languages
  known, not markup or data): languages to extract.
- ` + "`skip_dirs`" + ` (list of strings, default vendor, node_modules,
  third_party, third-party, thirdparty, bower_components, jspm_packages,
  site-packages, __pycache__, .venv, venv, .tox, .mypy_cache, .bundle, Pods,
  Carthage): folder names skipped at any depth.
- ` + "`max_file_bytes`" + ` (number, default 1048576): larger files are skipped.
- ` + "`max_line_length`" + ` (number, default 1000) and
  ` + "`max_mean_line_length`" + ` (number, default 100): the minified-file
  limits, in characters.

The tokenizer is the ` + "`tokenizer`" + ` input folder when set, else the
Qwen2.5 tokenizer that tokenizer.Default finds.
`

// languageDoc lists the languages and the file names that select them,
// for the end of the documentation.
func languageDoc() string {
	exts := map[string][]string{}
	for ext, l := range languages {
		exts[l] = append(exts[l], "*"+ext)
	}
	for name, l := range fileNameLanguages {
		exts[l] = append(exts[l], name)
	}
	names := make([]string, 0, len(exts))
	for l := range exts {
		names = append(names, l)
	}
	sort.Strings(names)
	def := map[string]bool{}
	for _, l := range defaultLanguages {
		def[l] = true
	}
	var b strings.Builder
	b.WriteString("\nLanguages and the file names that select them (\"(default)\" marks the default set):\n\n")
	for _, l := range names {
		sort.Strings(exts[l])
		mark := ""
		if def[l] {
			mark = " (default)"
		}
		fmt.Fprintf(&b, "- %s%s: %s\n", l, mark, strings.Join(exts[l], ", "))
	}
	return b.String()
}

func stringList(xs []string) cty.Value {
	vals := make([]cty.Value, len(xs))
	for i, x := range xs {
		vals[i] = cty.StringVal(x)
	}
	return cty.ListVal(vals)
}

func attr(name string, ty cty.Type, def cty.Value) hcldec.Spec {
	return &hcldec.DefaultSpec{
		Primary: &hcldec.AttrSpec{Name: name, Type: ty},
		Default: &hcldec.LiteralSpec{Value: def},
	}
}

var spec = hcldec.ObjectSpec{
	"per_file":             attr("per_file", cty.Number, cty.NumberIntVal(2)),
	"seed":                 attr("seed", cty.Number, cty.NumberIntVal(0)),
	"max_len":              attr("max_len", cty.Number, cty.NumberIntVal(1600)),
	"middle_min_tokens":    attr("middle_min_tokens", cty.Number, cty.NumberIntVal(8)),
	"middle_max_tokens":    attr("middle_max_tokens", cty.Number, cty.NumberIntVal(256)),
	"syntax_frac":          attr("syntax_frac", cty.Number, cty.NumberFloatVal(0.5)),
	"format":               attr("format", cty.String, cty.StringVal("fim")),
	"repo_context":         attr("repo_context", cty.Bool, cty.False),
	"languages":            attr("languages", cty.List(cty.String), stringList(defaultLanguages)),
	"skip_dirs":            attr("skip_dirs", cty.List(cty.String), stringList(defaultSkipDirs)),
	"max_file_bytes":       attr("max_file_bytes", cty.Number, cty.NumberIntVal(1<<20)),
	"max_line_length":      attr("max_line_length", cty.Number, cty.NumberIntVal(1000)),
	"max_mean_line_length": attr("max_mean_line_length", cty.Number, cty.NumberIntVal(100)),
}

// config is the decoded parameter object.
type config struct {
	PerFile           int      `cty:"per_file"`
	Seed              int64    `cty:"seed"`
	MaxLen            int      `cty:"max_len"`
	MiddleMin         int      `cty:"middle_min_tokens"`
	MiddleMax         int      `cty:"middle_max_tokens"`
	SyntaxFrac        float64  `cty:"syntax_frac"`
	Format            string   `cty:"format"`
	RepoContext       bool     `cty:"repo_context"`
	Languages         []string `cty:"languages"`
	SkipDirs          []string `cty:"skip_dirs"`
	MaxFileBytes      int64    `cty:"max_file_bytes"`
	MaxLineLength     int      `cty:"max_line_length"`
	MaxMeanLineLength int      `cty:"max_mean_line_length"`
}

// Stage is a configured code_fim stage.
type Stage struct {
	cfg    config
	walk   walkOptions
	sample sampleOptions
	limits contentLimits

	tokOnce sync.Once
	tok     tokenCounter
	tokErr  error

	// mu guards stats, which Items fills for Reduce.
	mu    sync.Mutex
	stats *walkStats
}

var _ stages.Mapper = (*Stage)(nil)

func newStage(v cty.Value) (stages.Stage, hcl.Diagnostics) {
	var c config
	if err := gocty.FromCtyValue(v, &c); err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid code_fim parameters",
			Detail:   err.Error(),
		}}
	}
	var diags hcl.Diagnostics
	bad := func(summary, detail string) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail})
	}
	if c.PerFile < 1 {
		bad("Invalid per_file", "per_file must be at least 1.")
	}
	if c.MiddleMin < 1 || c.MiddleMax < c.MiddleMin {
		bad("Invalid middle size", "middle_min_tokens must be at least 1 and middle_max_tokens at least middle_min_tokens.")
	}
	if c.MaxLen < c.MiddleMax+16 {
		bad("Invalid max_len", fmt.Sprintf("max_len (%d) must leave room for a middle of middle_max_tokens (%d) and at least 16 tokens of prompt.", c.MaxLen, c.MiddleMax))
	}
	if c.SyntaxFrac < 0 || c.SyntaxFrac > 1 {
		bad("Invalid syntax_frac", "syntax_frac is a share between 0 and 1.")
	}
	if c.Format != "fim" && c.Format != "chat" {
		bad("Invalid format", fmt.Sprintf("format is %q; use \"fim\" or \"chat\".", c.Format))
	}
	if c.MaxFileBytes < 1 || c.MaxLineLength < 1 || c.MaxMeanLineLength < 1 {
		bad("Invalid size limit", "max_file_bytes, max_line_length and max_mean_line_length must be positive.")
	}
	known := map[string]bool{}
	for _, l := range languages {
		known[l] = true
	}
	for _, l := range fileNameLanguages {
		known[l] = true
	}
	langs := map[string]bool{}
	for _, l := range c.Languages {
		if !known[l] {
			bad("Unknown language", fmt.Sprintf("%q is not a language code_fim knows; the known names are listed at the end of its documentation.", l))
		}
		langs[l] = true
	}
	if diags.HasErrors() {
		return nil, diags
	}
	skip := map[string]bool{}
	for _, d := range c.SkipDirs {
		skip[d] = true
	}
	s := &Stage{
		cfg:  c,
		walk: walkOptions{skipDirs: skip, languages: langs, maxFileBytes: c.MaxFileBytes},
		sample: sampleOptions{
			perFile: c.PerFile, maxLen: c.MaxLen, middleMin: c.MiddleMin, middleMax: c.MiddleMax,
			syntaxFrac: c.SyntaxFrac, seed: c.Seed,
			render: renderOptions{chat: c.Format == "chat", repoContext: c.RepoContext},
		},
		limits: contentLimits{maxLineLength: c.MaxLineLength, maxMeanLineLength: c.MaxMeanLineLength},
	}
	return s, nil
}

// tokenizer loads, once, the `tokenizer` input folder or else the
// default Qwen2.5 tokenizer.
func (s *Stage) tokenizer(env *stages.Env) (tokenCounter, error) {
	s.tokOnce.Do(func() { s.tok, s.tokErr = tokenizer.LoadInput(env.Paths("tokenizer")) })
	return s.tok, s.tokErr
}

// Run extracts every file; the engine drives Items, Map and Reduce itself,
// with a cache per file.
func (s *Stage) Run(ctx context.Context, env *stages.Env) error {
	return stages.RunMapper(ctx, env, s)
}

// repos returns the repositories of the `repos` input by name, and an
// error when two share a name.
func repos(env *stages.Env) ([]string, map[string]string, error) {
	byName := map[string]string{}
	var names []string
	for _, p := range env.Paths("repos") {
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, err
		}
		if !st.IsDir() {
			return nil, nil, fmt.Errorf("repos: %s is not a folder", p)
		}
		n := repoName(p)
		if other, dup := byName[n]; dup {
			if filepath.Clean(other) == filepath.Clean(p) {
				continue
			}
			return nil, nil, fmt.Errorf("repos: %s and %s are both named %q; repository names (folder base names) must differ", other, p, n)
		}
		byName[n] = p
		names = append(names, n)
	}
	sort.Strings(names)
	return names, byName, nil
}

// Items lists one item per kept source file, keyed "<repo>/<path>".
func (s *Stage) Items(ctx context.Context, env *stages.Env) ([]stages.Item, error) {
	names, byName, err := repos(env)
	if err != nil {
		return nil, err
	}
	st := &walkStats{SkippedDirs: map[string]int{}, SkippedFiles: map[string]int{}}
	var items []stages.Item
	for _, n := range names {
		files, err := walkRepo(ctx, byName[n], s.walk, st)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			items = append(items, stages.Item{Key: n + "/" + f.Rel, Files: []string{f.Abs}})
		}
	}
	s.mu.Lock()
	s.stats = st
	s.mu.Unlock()
	return items, nil
}

// itemHeader is the first line Map writes for an item; the records
// follow it, one a line.
type itemHeader struct {
	Key      string         `json:"key"`
	Language string         `json:"language"`
	Bytes    int            `json:"bytes"`
	Skipped  string         `json:"skipped,omitempty"`
	Records  int            `json:"records"`
	Kinds    map[string]int `json:"kinds,omitempty"`
}

// Map reads one file, filters it and writes its examples.
func (s *Stage) Map(ctx context.Context, env *stages.Env, item stages.Item, w io.Writer) error {
	if len(item.Files) != 1 {
		return fmt.Errorf("code_fim: item %s has %d files, want 1", item.Key, len(item.Files))
	}
	content, err := os.ReadFile(item.Files[0])
	if err != nil {
		return err
	}
	repo, rel := splitKey(item.Key)
	f := fileInfo{repo: repo, path: rel, language: languageOf(filepath.Base(rel))}
	h := itemHeader{Key: item.Key, Language: f.language, Bytes: len(content)}
	var recs []*artifacts.Record
	src := string(content)
	switch why := classify(content, s.limits); {
	case why != "":
		h.Skipped = why
	case hasControlToken(src, s.sample.render.chat):
		h.Skipped = skipSpecial
	default:
		tok, err := s.tokenizer(env)
		if err != nil {
			return err
		}
		samples, err := sampleFile(src, tok, &s.sample, f)
		if err != nil {
			return fmt.Errorf("%s: %v", item.Files[0], err)
		}
		if len(samples) == 0 {
			h.Skipped = skipTooSmall
		}
		for i := range samples {
			recs = append(recs, samples[i].finish(f, i))
			if h.Kinds == nil {
				h.Kinds = map[string]int{}
			}
			h.Kinds[samples[i].kind]++
		}
	}
	h.Records = len(recs)
	rw := artifacts.NewRecordWriter(w)
	enc := json.NewEncoder(w)
	if err := enc.Encode(&h); err != nil {
		return err
	}
	for _, r := range recs {
		if err := rw.Write(r); err != nil {
			return err
		}
	}
	return rw.Flush()
}

// skipTooSmall is the report's reason for a file that yields no example.
const skipTooSmall = "no_middle"

// report is the JSON written to the `report` output.
type report struct {
	Repos        []string       `json:"repos"`
	FilesListed  int            `json:"files_listed"`
	FilesUsed    int            `json:"files_used"`
	BytesUsed    int64          `json:"bytes_used"`
	Records      int            `json:"records"`
	SkippedFiles map[string]int `json:"skipped_files"`
	SkippedDirs  map[string]int `json:"skipped_dirs"`
	ByLanguage   map[string]int `json:"records_by_language"`
	ByBoundary   map[string]int `json:"records_by_boundary"`
}

// Reduce concatenates the items' records in key order and writes the
// report.
func (s *Stage) Reduce(ctx context.Context, env *stages.Env, results []stages.ItemResult) error {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	if st == nil {
		// The engine may reduce without listing on this instance; the
		// walk is cheap next to extraction.
		if _, err := s.Items(ctx, env); err != nil {
			return err
		}
		s.mu.Lock()
		st = s.stats
		s.mu.Unlock()
	}
	names, _, err := repos(env)
	if err != nil {
		return err
	}
	rep := report{
		Repos:        names,
		SkippedFiles: map[string]int{},
		SkippedDirs:  map[string]int{},
		ByLanguage:   map[string]int{},
		ByBoundary:   map[string]int{},
	}
	for k, v := range st.SkippedFiles {
		rep.SkippedFiles[k] += v
	}
	for k, v := range st.SkippedDirs {
		rep.SkippedDirs[k] += v
	}
	sorted := append([]stages.ItemResult(nil), results...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Item.Key < sorted[j].Item.Key })

	out, err := os.Create(env.OutputPath("records"))
	if err != nil {
		return err
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	for _, r := range sorted {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, body, err := readResult(r)
		if err != nil {
			return err
		}
		rep.FilesListed++
		if h.Skipped != "" {
			rep.SkippedFiles[h.Skipped]++
			continue
		}
		rep.FilesUsed++
		rep.BytesUsed += int64(h.Bytes)
		rep.Records += h.Records
		rep.ByLanguage[h.Language] += h.Records
		for k, v := range h.Kinds {
			rep.ByBoundary[k] += v
		}
		if _, err := bw.Write(body); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(&rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(env.OutputPath("report"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if env.Summary != nil {
		env.Summary["files_listed"] = rep.FilesListed
		env.Summary["files_used"] = rep.FilesUsed
		env.Summary["records"] = rep.Records
		env.Summary["mb_used"] = float64(rep.BytesUsed) / 1e6
	}
	return nil
}

// readResult splits one item's Map output into its header and records.
func readResult(r stages.ItemResult) (*itemHeader, []byte, error) {
	rc, err := r.Open()
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, nil, err
	}
	line, body, _ := bytes.Cut(data, []byte("\n"))
	var h itemHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return nil, nil, fmt.Errorf("code_fim: result of %s: %v", r.Item.Key, err)
	}
	if h.Key != r.Item.Key {
		return nil, nil, fmt.Errorf("code_fim: result of %s holds %s", r.Item.Key, h.Key)
	}
	return &h, body, nil
}
