package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/cache"
)

// Workspace is the folder that holds everything pipe writes for one
// project: the cache, materialised outputs (out/<stage>/<output>), run
// records (runs/), the state of every stage's last run, the stat memo and
// the lock.
type Workspace struct {
	Dir   string
	Cache *cache.Cache
	Memo  *cache.StatMemo

	lockFile *os.File
	stateMu  sync.Mutex
}

// OpenWorkspace opens (creating it if needed) the workspace in dir.
func OpenWorkspace(dir string) (*Workspace, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{"out", "runs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o777); err != nil {
			return nil, fmt.Errorf("workspace: %v", err)
		}
	}
	c, err := cache.Open(filepath.Join(abs, "cache"))
	if err != nil {
		return nil, fmt.Errorf("workspace: %v", err)
	}
	memo := cache.LoadStatMemo(filepath.Join(abs, "statmemo"))
	memo.SkipDirs = []string{abs} // an input folder holding the workspace must not change with every run
	return &Workspace{Dir: abs, Cache: c, Memo: memo}, nil
}

// OutPath is where output name of stage is materialised.
func (w *Workspace) OutPath(stage, name string) string {
	return filepath.Join(w.Dir, "out", stage, name)
}

// ErrLocked is returned by Lock with wait false when another process holds
// the workspace.
var ErrLocked = errors.New("workspace is locked by another pipe process")

// Lock takes the workspace lock, so that only one run (or gc) at a time
// changes it. With wait set, it blocks until the lock is free (or ctx is done), calling
// waiting once first if it has to wait; otherwise it returns ErrLocked.
// The lock is released by Unlock or when the process exits, however it
// exits.
func (w *Workspace) Lock(ctx context.Context, wait bool, waiting func(holder string)) error {
	f, err := os.OpenFile(filepath.Join(w.Dir, "lock"), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return err
		}
		b, _ := os.ReadFile(f.Name())
		holder := strings.TrimSpace(string(b))
		if !wait {
			f.Close()
			return fmt.Errorf("%w (%s)", ErrLocked, holder)
		}
		if waiting != nil {
			waiting(holder)
		}
		// Poll rather than block, so that Ctrl-C still works.
		for {
			select {
			case <-ctx.Done():
				f.Close()
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				break
			}
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				f.Close()
				return err
			}
		}
	}
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d since %s\n", os.Getpid(), time.Now().Format(time.RFC3339))
	w.lockFile = f
	// A killed run leaves its private folders behind; nobody else can be
	// using them now.
	os.RemoveAll(filepath.Join(w.Dir, "tmp"))
	os.MkdirAll(filepath.Join(w.Dir, "tmp"), 0o777)
	w.Cache.CleanTemp()
	return nil
}

// Unlock releases the lock taken by Lock.
func (w *Workspace) Unlock() {
	if w.lockFile != nil {
		syscall.Flock(int(w.lockFile.Fd()), syscall.LOCK_UN)
		w.lockFile.Close()
		w.lockFile = nil
	}
}

// InputState records one input path as a run saw it.
type InputState struct {
	Name   string           `json:"name"`
	Path   string           `json:"path"`
	Digest artifacts.Digest `json:"digest"`
	Dir    bool             `json:"dir,omitempty"`
	// Stage is the stage that produced the input, if any.
	Stage string `json:"stage,omitempty"`
	// Manifest is the cache object holding a folder input's manifest,
	// so that plan can tell which file changed.
	Manifest artifacts.Digest `json:"manifest,omitempty"`
}

// KeyParts are the parts of an action key, kept so that plan can say which
// part changed.
type KeyParts struct {
	Kind    string                      `json:"kind"`
	Version string                      `json:"version"`
	Params  map[string]json.RawMessage  `json:"params"`
	Extra   map[string]string           `json:"extra,omitempty"`
	Inputs  []InputState                `json:"inputs"`
	Refs    map[string]artifacts.Digest `json:"refs,omitempty"`
}

// StageState is what the workspace remembers of a stage's latest
// successful run.
type StageState struct {
	Stage    string               `json:"stage"`
	Kind     string               `json:"kind"`
	Key      string               `json:"key"`
	Parts    KeyParts             `json:"parts"`
	Outputs  []artifacts.Artifact `json:"outputs"`
	RunID    string               `json:"run_id"`
	Time     time.Time            `json:"time"`
	Executed bool                 `json:"executed"`
	Summary  map[string]any       `json:"summary,omitempty"`
}

func (w *Workspace) statePath() string { return filepath.Join(w.Dir, "state.json") }

// State returns the state of every stage that ever succeeded here.
func (w *Workspace) State() (map[string]*StageState, error) {
	st := map[string]*StageState{}
	b, err := os.ReadFile(w.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %v", w.statePath(), err)
	}
	return st, nil
}

// saveState merges states into the state file.
func (w *Workspace) saveState(states []*StageState) error {
	w.stateMu.Lock()
	defer w.stateMu.Unlock()
	st, err := w.State()
	if err != nil {
		st = map[string]*StageState{}
	}
	for _, s := range states {
		st[s.Stage] = s
	}
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	return cache.WriteFileAtomic(w.statePath(), b)
}

// SaveRun writes the record of a run under runs/.
func (w *Workspace) SaveRun(r *RunRecord) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return cache.WriteFileAtomic(filepath.Join(w.Dir, "runs", r.ID+".json"), b)
}

// Runs returns the records of past runs, newest first.
func (w *Workspace) Runs() ([]*RunRecord, error) {
	ents, err := os.ReadDir(filepath.Join(w.Dir, "runs"))
	if err != nil {
		return nil, err
	}
	var out []*RunRecord
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(w.Dir, "runs", e.Name()))
		if err != nil {
			continue
		}
		var r RunRecord
		if json.Unmarshal(b, &r) == nil {
			out = append(out, &r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.After(out[j].Started) })
	return out, nil
}

// pruneState keeps only the given states.
func (w *Workspace) pruneState(keep []*StageState) error {
	w.stateMu.Lock()
	defer w.stateMu.Unlock()
	st := map[string]*StageState{}
	for _, s := range keep {
		st[s.Stage] = s
	}
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	return cache.WriteFileAtomic(w.statePath(), b)
}
