package claudelogs

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pipeml/pipe/stages"
)

// fileRole says how a transcript file relates to its session.
type fileRole int

const (
	roleSession   fileRole = iota // <project>/<session>.jsonl
	roleAgent20                   // <project>/agent-<id>.jsonl (2.0.x)
	roleSubagents                 // <project>/<session>/subagents/agent-<id>.jsonl (2.1.x)
)

func roleOf(path string) fileRole {
	base := filepath.Base(path)
	if !strings.HasPrefix(base, "agent-") {
		return roleSession
	}
	if filepath.Base(filepath.Dir(path)) == "subagents" {
		return roleSubagents
	}
	return roleAgent20
}

// isCompactionAgent reports the file of the agent that writes a
// compaction summary: its output is context, never a target.
func isCompactionAgent(path string) bool {
	return strings.HasPrefix(filepath.Base(path), "agent-acompact")
}

// listFiles expands the input paths (files, folders, already-expanded
// globs) into the .jsonl files under them, absolute, cleaned and sorted.
func listFiles(ctx context.Context, inputs []string) ([]string, error) {
	set := map[string]bool{}
	for _, in := range inputs {
		abs, err := filepath.Abs(in)
		if err != nil {
			return nil, err
		}
		info, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("logs: %w", err)
		}
		if !info.IsDir() {
			set[abs] = true
			continue
		}
		err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(d.Name(), ".jsonl") {
				set[p] = true
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("logs: %w", err)
		}
	}
	files := make([]string, 0, len(set))
	for f := range set {
		files = append(files, f)
	}
	sort.Strings(files)
	return files, nil
}

// peekSessionID returns the first sessionId found in the first lines of
// a file, or "".
func peekSessionID(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for i := 0; i < 50; i++ {
		line, err := r.ReadBytes('\n')
		var v struct {
			SessionID string `json:"sessionId"`
		}
		if json.Unmarshal(line, &v) == nil && v.SessionID != "" {
			return v.SessionID
		}
		if err != nil {
			return ""
		}
	}
	return ""
}

// groupItems groups transcript files into one item per session. The key
// is "<project folder>/<session id>.jsonl", which does not depend on where
// the logs folder is; the session file comes first in Files, then its
// agent files in path order.
func groupItems(files []string) []stages.Item {
	type session struct {
		main   string
		agents []string
		key    string
	}
	byPath := map[string]*session{} // session file path (existing or not) -> session
	get := func(sessionPath string) *session {
		s := byPath[sessionPath]
		if s == nil {
			project := filepath.Base(filepath.Dir(sessionPath))
			s = &session{key: project + "/" + filepath.Base(sessionPath)}
			byPath[sessionPath] = s
		}
		return s
	}
	for _, f := range files {
		switch roleOf(f) {
		case roleSession:
			get(f).main = f
		case roleSubagents:
			sessionDir := filepath.Dir(filepath.Dir(f))
			s := get(sessionDir + ".jsonl")
			s.agents = append(s.agents, f)
		case roleAgent20:
			id := peekSessionID(f)
			if id == "" {
				id = strings.TrimSuffix(filepath.Base(f), ".jsonl")
			}
			s := get(filepath.Join(filepath.Dir(f), id+".jsonl"))
			s.agents = append(s.agents, f)
		}
	}
	paths := sortedKeys(byPath)
	seen := map[string]int{}
	items := make([]stages.Item, 0, len(paths))
	for _, p := range paths {
		s := byPath[p]
		key := s.key
		if n := seen[s.key]; n > 0 {
			key = fmt.Sprintf("%s~%d", s.key, n+1)
		}
		seen[s.key]++
		var fs []string
		if s.main != "" {
			fs = append(fs, s.main)
		}
		sort.Strings(s.agents)
		fs = append(fs, s.agents...)
		items = append(items, stages.Item{Key: key, Files: fs})
	}
	return items
}
