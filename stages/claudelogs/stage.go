package claudelogs

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

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/stages/secrets"
)

// Stage is a configured claude_logs stage. It is safe for concurrent Map
// calls.
type Stage struct {
	cfg Config
	det *secrets.Detector
}

var _ stages.Mapper = (*Stage)(nil)

// New returns a stage with the given parameters.
func New(cfg Config) *Stage {
	return &Stage{cfg: cfg, det: secrets.New(secrets.Options{Emails: cfg.RedactEmails, HomePaths: cfg.RedactHomePaths})}
}

// Items lists one item per session under the logs input.
func (s *Stage) Items(ctx context.Context, env *stages.Env) ([]stages.Item, error) {
	files, err := listFiles(ctx, env.Paths("logs"))
	if err != nil {
		return nil, err
	}
	return groupItems(files), nil
}

// displayName names a file in the report by its path below the projects
// folder ("<project>/<session>.jsonl", "<project>/<session>/subagents/
// agent-<id>.jsonl"), independent of where the logs live.
func displayName(path string) string {
	n := 2
	if roleOf(path) == roleSubagents {
		n = 4
	}
	parts := strings.Split(filepath.ToSlash(path), "/")
	if len(parts) > n {
		parts = parts[len(parts)-n:]
	}
	return strings.Join(parts, "/")
}

// Map converts one session. Its output is one JSON line with the item's
// report, then the item's records.
func (s *Stage) Map(ctx context.Context, env *stages.Env, item stages.Item, w io.Writer) error {
	cfg := &s.cfg
	rep := newReport()
	rep.Sessions = 1
	var files []*parsedFile
	var agentFile []bool
	for _, path := range item.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		isAgent := roleOf(path) != roleSession
		name := displayName(path)
		before := rep.LinesIn
		pf, err := parseFile(path, name, len(files), rep, cfg.ReportExamples)
		if err != nil {
			return fmt.Errorf("claude_logs: %w", err)
		}
		rep.Files++
		if isAgent {
			rep.SubagentFiles++
			switch {
			case isCompactionAgent(path):
				rep.drop("compaction_agent", rep.LinesIn-before)
				continue
			case !cfg.Subagents:
				rep.drop("subagent", rep.LinesIn-before)
				continue
			}
		}
		files = append(files, pf)
		agentFile = append(agentFile, isAgent)
	}
	sessionID, project := "", ""
	for _, pf := range files {
		for _, n := range pf.nodes {
			if sessionID == "" && n.SessionID != "" {
				sessionID = n.SessionID
			}
			if project == "" && n.Cwd != "" {
				project = filepath.Base(filepath.Clean(strings.ReplaceAll(n.Cwd, `\`, "/")))
			}
		}
	}
	if sessionID == "" {
		sessionID = strings.TrimSuffix(filepath.Base(item.Key), ".jsonl")
	}
	if project == "" {
		project = filepath.Dir(item.Key)
	}
	counts := secrets.Counts{}
	project = s.det.Redact(project, counts)
	convs := sessionConversations(files, agentFile, cfg, s.det, rep, counts)

	var buf bytes.Buffer
	rw := artifacts.NewRecordWriter(&buf)
	for _, c := range convs {
		if c.agent != "" && !cfg.Subagents {
			rep.drop("subagent_conversation", 1)
			continue
		}
		if c.agent != "" && isWarmup(c.events) {
			rep.drop("warmup_agent", 1)
			continue
		}
		if c.agent == "" {
			rep.Conversations++
		} else {
			rep.SubagentConversations++
		}
		for _, seg := range segments(c.events, rep) {
			rep.Turns += len(seg)
			for _, t := range seg {
				if t.dropped != "" {
					rep.DroppedTurns[t.dropped]++
				}
			}
			var exs []example
			switch cfg.Mode {
			case ModePair:
				exs = pairExamples(seg)
			case ModeFollow:
				exs = followExamples(seg, cfg, rep)
			default:
				exs = turnExamples(seg, cfg)
			}
			for _, ex := range exs {
				if err := rw.Write(s.record(ex, c, sessionID, project)); err != nil {
					return err
				}
			}
		}
	}
	if err := rw.Flush(); err != nil {
		return err
	}
	rep.RecordsOut = rw.Count()
	rep.addRedactions(counts)
	head, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(head, '\n')); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// isWarmup reports the cache warm-up sidechains Claude Code 2.0.x starts
// with the prompt "Warmup": not work anyone asked for.
func isWarmup(evs []event) bool {
	for _, e := range evs {
		if e.kind == evHuman {
			return strings.TrimSpace(e.msg.Content) == "Warmup"
		}
	}
	return false
}

// record assembles one output record.
func (s *Stage) record(ex example, c conversation, sessionID, project string) *artifacts.Record {
	msgs := make([]artifacts.Message, 0, len(ex.msgs)+1)
	if s.cfg.SystemPrompt != "" {
		msgs = append(msgs, artifacts.Message{Role: "system", Content: s.cfg.SystemPrompt})
	}
	msgs = append(msgs, ex.msgs...)
	meta := map[string]any{
		"source":           "claude_logs",
		"group":            sessionID,
		"session":          sessionID,
		"project":          project,
		"turn":             ex.turn.index,
		"start":            ex.start,
		"end":              ex.end,
		"mode":             s.cfg.Mode,
		"context_messages": ex.context,
	}
	if c.version != "" {
		meta["version"] = c.version
	}
	if c.agent != "" {
		meta["agent"] = c.agent
	}
	if ex.hasPairs {
		meta["pair"] = ex.pairSeq
	}
	if ex.split {
		meta["part"] = ex.part
	}
	if ex.turn.summary {
		meta["after_compaction"] = true
	}
	return &artifacts.Record{Messages: msgs, Tools: toolsOf(msgs), Meta: meta}
}

// Reduce writes the records of every session in key order and the summed
// report.
func (s *Stage) Reduce(ctx context.Context, env *stages.Env, results []stages.ItemResult) error {
	sort.Slice(results, func(i, j int) bool { return results[i].Item.Key < results[j].Item.Key })
	out, err := os.Create(env.OutputPath("records"))
	if err != nil {
		return err
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	total := newReport()
	for _, r := range results {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.reduceOne(r, bw, total); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(total, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(env.OutputPath("report"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	if env.Summary != nil {
		env.Summary["sessions"] = total.Sessions
		env.Summary["records_in"] = total.LinesIn
		env.Summary["records_out"] = total.RecordsOut
		env.Summary["dropped_turns"] = sum(total.DroppedTurns)
		env.Summary["redactions"] = sum(total.Redactions)
		env.Summary["malformed"] = sum(total.Malformed)
	}
	return nil
}

func (s *Stage) reduceOne(r stages.ItemResult, w io.Writer, total *Report) error {
	rc, err := r.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<16)
	head, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("claude_logs: result of %s has no report line", r.Item.Key)
	}
	rep := newReport()
	if err := json.Unmarshal(head, rep); err != nil {
		return fmt.Errorf("claude_logs: result of %s: %v", r.Item.Key, err)
	}
	total.add(rep, s.cfg.ReportExamples)
	_, err = io.Copy(w, br)
	return err
}

// Run maps every item with env.Parallelism workers, then reduces. The
// engine drives Items, Map and Reduce itself, with caching; Run serves
// tests and callers outside the engine.
func (s *Stage) Run(ctx context.Context, env *stages.Env) error {
	items, err := s.Items(ctx, env)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	outs := make([][]byte, len(items))
	errs := make([]error, len(items))
	next := make(chan int)
	var mu sync.Mutex
	done := 0
	var wg sync.WaitGroup
	for range max(1, env.Parallelism) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var buf bytes.Buffer
				if err := s.Map(ctx, env, items[i], &buf); err != nil {
					errs[i] = err
					cancel()
					continue
				}
				outs[i] = buf.Bytes()
				if env.Progress != nil {
					mu.Lock()
					done++
					env.Progress(done, len(items))
					mu.Unlock()
				}
			}
		}()
	}
feed:
	for i := range items {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	results := make([]stages.ItemResult, len(items))
	for i, it := range items {
		data := outs[i]
		results[i] = stages.ItemResult{Item: it, Open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}}
	}
	return s.Reduce(ctx, env, results)
}
