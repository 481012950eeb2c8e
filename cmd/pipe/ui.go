package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/log"
	"golang.org/x/term"

	"github.com/pipeml/pipe/engine"
)

// stageHandler is a slog.Handler over a charm logger that turns the
// "stage" attribute into the line's prefix, so that every line names its
// stage up front.
type stageHandler struct{ l *log.Logger }

func (h stageHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return h.l.Enabled(ctx, lv)
}
func (h stageHandler) Handle(ctx context.Context, r slog.Record) error { return h.l.Handle(ctx, r) }
func (h stageHandler) WithGroup(name string) slog.Handler {
	return stageHandler{l: h.l.WithGroup(name).(*log.Logger)}
}
func (h stageHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	l := h.l
	var rest []slog.Attr
	for _, a := range attrs {
		if a.Key == "stage" {
			l = l.WithPrefix(a.Value.String())
		} else {
			rest = append(rest, a)
		}
	}
	if len(rest) == 0 {
		return stageHandler{l: l}
	}
	return stageHandler{l: l.WithAttrs(rest).(*log.Logger)}
}

// ui owns stderr during a run: log lines, and on a terminal a progress
// line that log lines are written above.
type ui struct {
	mu      sync.Mutex
	out     io.Writer
	tty     bool
	status  string // current progress line, guarded by mu
	total   int
	done    int
	started time.Time
	running map[string]*stageProgress // guarded by mu
	quiet   bool
}

type stageProgress struct {
	start       time.Time
	done, total int
}

var _ engine.Hook = (*ui)(nil)

func newUI(w io.Writer, total int) *ui {
	u := &ui{out: w, total: total, started: time.Now(), running: map[string]*stageProgress{}}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		u.tty = true
	}
	return u
}

// Write implements io.Writer for the logger: it clears the progress line
// first and redraws it after.
func (u *ui) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.tty && u.status != "" {
		fmt.Fprint(u.out, "\r\x1b[K")
	}
	n, err := u.out.Write(p)
	if u.tty && u.status != "" {
		fmt.Fprint(u.out, u.status)
	}
	return n, err
}

func (u *ui) logger(verbose bool) *slog.Logger {
	cl := log.NewWithOptions(u, log.Options{ReportTimestamp: true, TimeFormat: "15:04:05"})
	if verbose {
		cl.SetLevel(log.DebugLevel)
	}
	return slog.New(stageHandler{l: cl})
}

func (u *ui) StageStarted(name string) {
	u.mu.Lock()
	u.running[name] = &stageProgress{start: time.Now()}
	u.mu.Unlock()
	u.redraw()
}

func (u *ui) StageProgress(name string, done, total int) {
	u.mu.Lock()
	if p := u.running[name]; p != nil {
		p.done, p.total = done, total
	}
	u.mu.Unlock()
}

func (u *ui) StageFinished(r *engine.StageResult) {
	u.mu.Lock()
	delete(u.running, r.Name)
	u.done++
	u.mu.Unlock()
	u.redraw()
}

// loop redraws the progress line until ctx is done.
func (u *ui) loop(ctx context.Context) {
	if !u.tty {
		return
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			u.mu.Lock()
			if u.status != "" {
				fmt.Fprint(u.out, "\r\x1b[K")
				u.status = ""
			}
			u.mu.Unlock()
			return
		case <-t.C:
			u.redraw()
		}
	}
}

func (u *ui) redraw() {
	if !u.tty {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	names := make([]string, 0, len(u.running))
	for n := range u.running {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		p := u.running[n]
		s := n
		if p.total > 0 {
			s += fmt.Sprintf(" %d/%d items", p.done, p.total)
		}
		s += fmt.Sprintf(" %.0fs", time.Since(p.start).Seconds())
		parts = append(parts, s)
	}
	line := fmt.Sprintf("[%d/%d stages] %.1fs", u.done, u.total, time.Since(u.started).Seconds())
	if len(parts) > 0 {
		line += " running: " + strings.Join(parts, ", ")
	}
	if w, _, err := term.GetSize(int(os.Stderr.Fd())); err == nil && len(line) > w-1 && w > 10 {
		line = line[:w-2] + "…"
	}
	fmt.Fprint(u.out, "\r\x1b[K"+line)
	u.status = line
}
