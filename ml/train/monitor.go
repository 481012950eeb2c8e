package train

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Metric is one line of metrics.jsonl: a training step (Loss set) or an
// evaluation (EvalLoss set).
type Metric struct {
	Step  int     `json:"step"`
	Epoch float64 `json:"epoch"`
	// Training steps.
	Loss         *float64 `json:"loss,omitempty"`
	LearningRate *float64 `json:"learning_rate,omitempty"`
	GradNorm     *float64 `json:"grad_norm,omitempty"`
	TokensPerSec *float64 `json:"tokens_per_second,omitempty"`
	Tokens       int64    `json:"tokens,omitempty"`
	// DeviceMemory is the device memory in use (bytes) at the end of the
	// step, PeakDeviceMemory the most seen so far (see MemorySampler).
	DeviceMemory     int64 `json:"device_memory_bytes,omitempty"`
	PeakDeviceMemory int64 `json:"peak_device_memory_bytes,omitempty"`
	// Evaluations.
	EvalLoss     *float64 `json:"eval_loss,omitempty"`
	BestEvalLoss *float64 `json:"best_eval_loss,omitempty"`
	// Time is the wall-clock time (RFC 3339).
	Time string `json:"time"`
}

func f64(v float64) *float64 { return &v }

// ReadMetrics reads a metrics.jsonl file.
func ReadMetrics(path string) ([]Metric, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Metric
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m Metric
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, i+1, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// openMetrics opens path for appending after dropping every line past
// step (those of a run that was interrupted after its last checkpoint).
func openMetrics(path string, step int) (*os.File, error) {
	if ms, err := ReadMetrics(path); err == nil {
		var buf bytes.Buffer
		for _, m := range ms {
			if m.Step <= step {
				b, _ := json.Marshal(m)
				buf.Write(append(b, '\n'))
			}
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

// MemorySampler reports the memory the training uses on its device.
type MemorySampler interface {
	// Sample returns the bytes in use now and the most seen since the
	// sampler started.
	Sample() (current, peak int64)
	// Close stops background sampling.
	Close()
}

// NewMemorySampler returns a sampler for a backend: on a CUDA backend it
// polls nvidia-smi for the GPU's memory in use every 100 ms (which counts
// what the allocator holds, so run XLA with preallocate=false for a
// meaningful figure); elsewhere it reads the process's resident set size
// from /proc (the pure-Go backend's "device" is host memory). An XLA
// backend on a machine with nvidia-smi counts as CUDA. It returns
// nil when neither is available.
func NewMemorySampler(ctx context.Context, backendName string) MemorySampler {
	if strings.Contains(backendName, "cuda") || strings.HasPrefix(backendName, "xla") {
		if path, err := exec.LookPath("nvidia-smi"); err == nil {
			return startGPUSampler(ctx, path)
		}
	}
	if _, err := os.Stat("/proc/self/status"); err == nil {
		return procSampler{}
	}
	return nil
}

type procSampler struct{}

func (procSampler) Sample() (int64, int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	var cur, peak int64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			cur = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return cur, peak
}

func (procSampler) Close() {}

type gpuSampler struct {
	mu        sync.Mutex
	cur, peak int64
	cancel    context.CancelFunc
	done      chan struct{}
}

func startGPUSampler(ctx context.Context, smi string) *gpuSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &gpuSampler{cancel: cancel, done: make(chan struct{})}
	idx := "0"
	if v := os.Getenv("CUDA_VISIBLE_DEVICES"); v != "" {
		idx = strings.Split(v, ",")[0]
	}
	poll := func() {
		out, err := exec.CommandContext(ctx, smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", idx).Output()
		if err != nil {
			return
		}
		mib, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.cur = mib << 20
		s.peak = max(s.peak, s.cur)
		s.mu.Unlock()
	}
	poll()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				poll()
			}
		}
	}()
	return s
}

func (s *gpuSampler) Sample() (int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.peak
}

func (s *gpuSampler) Close() {
	s.cancel()
	<-s.done
}

// progressBar draws one status line. On a terminal it redraws the line in
// place; otherwise it prints a line every 30 seconds and at the end.
type progressBar struct {
	w        io.Writer
	tty      bool
	total    int
	last     time.Time
	lastLine int
}

func newProgressBar(w io.Writer, total int) *progressBar {
	if w == nil {
		return nil
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progressBar{w: bufio.NewWriter(w), tty: tty, total: total}
}

func (p *progressBar) update(step int, loss, tokPerSec float64, eta time.Duration, final bool) {
	if p == nil {
		return
	}
	now := time.Now()
	if !p.tty && !final && now.Sub(p.last) < 30*time.Second && step != 1 {
		return
	}
	p.last = now
	const width = 24
	done := 0
	if p.total > 0 {
		done = min(width, width*step/p.total)
	}
	bar := strings.Repeat("#", done) + strings.Repeat("-", width-done)
	line := fmt.Sprintf("train [%s] %d/%d steps  loss %.4f  %s tok/s  ETA %s",
		bar, step, p.total, loss, humanCount(tokPerSec), eta.Round(time.Second))
	bw := p.w.(*bufio.Writer)
	if p.tty {
		pad := ""
		if n := p.lastLine - len(line); n > 0 {
			pad = strings.Repeat(" ", n)
		}
		fmt.Fprintf(bw, "\r%s%s", line, pad)
		if final {
			bw.WriteString("\n")
		}
		p.lastLine = len(line)
	} else {
		fmt.Fprintln(bw, line)
	}
	bw.Flush()
}

// message prints a line of its own (an evaluation result), keeping the
// bar intact on a terminal.
func (p *progressBar) message(format string, args ...any) {
	if p == nil {
		return
	}
	bw := p.w.(*bufio.Writer)
	if p.tty && p.lastLine > 0 {
		fmt.Fprintf(bw, "\r%s\r", strings.Repeat(" ", p.lastLine))
		p.lastLine = 0
	}
	fmt.Fprintf(bw, format+"\n", args...)
	bw.Flush()
}

func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
