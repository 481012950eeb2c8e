package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/engine"
)

// The test binary doubles as the pipe command: with PIPE_TEST_MAIN=1 it
// runs main, so that tests drive real subprocesses (and can kill them).
func TestMain(m *testing.M) {
	if os.Getenv("PIPE_TEST_MAIN") == "1" {
		os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func pipeCmd(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PIPE_TEST_MAIN=1", "NO_COLOR=1")
	return cmd
}

// pipe runs the command to completion and returns stdout, stderr and the
// exit code.
func pipe(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := pipeCmd(dir, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func runJSON(t *testing.T, dir string, args ...string) (*engine.RunRecord, string) {
	t.Helper()
	stdout, stderr, code := pipe(t, dir, append([]string{"run", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("pipe run: exit %d\nstderr:\n%s", code, stderr)
	}
	var rec engine.RunRecord
	if err := json.Unmarshal([]byte(stdout), &rec); err != nil {
		t.Fatalf("run --json: %v\n%s", err, stdout)
	}
	return &rec, stderr
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o777)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func statuses(rec *engine.RunRecord) string {
	var s []string
	for _, st := range rec.Stages {
		s = append(s, st.Name+"="+string(st.Status))
	}
	return strings.Join(s, " ")
}

// The README's example: two command stages; the second run skips both.
const twoStages = `
stage "command" "words" {
  program = "sh"
  args    = ["-c", "tr -s ' ' '\\n' < notes.txt | sort > {out.list}"]
  inputs  = ["notes.txt"]
  outputs = { list = "file" }
}

stage "command" "count" {
  program = "sh"
  args    = ["-c", "uniq -c < ${stage.command.words.list} > {out.counts}"]
  inputs  = [stage.command.words.list]
  outputs = { counts = "file" }
}
`

func TestTwoCommandStages(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"pipeline.hcl": twoStages, "notes.txt": "b a b c"})
	rec, _ := runJSON(t, dir)
	if got, want := statuses(rec), "words=executed count=executed"; got != want {
		t.Errorf("first run: %s, want %s", got, want)
	}
	rec, _ = runJSON(t, dir)
	if got, want := statuses(rec), "words=cached count=cached"; got != want {
		t.Errorf("second run: %s, want %s", got, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, ".pipe/out/count/counts"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(strings.Fields(string(b)), " "); got != "1 a 2 b 1 c" {
		t.Errorf("counts = %q", got)
	}
	// plan says why after a change, and run --force re-runs one stage.
	writeFiles(t, dir, map[string]string{"notes.txt": "b a b c d"})
	out, _, code := pipe(t, dir, "plan")
	if code != 0 || !strings.Contains(out, "input inputs: notes.txt changed") {
		t.Errorf("plan (exit %d):\n%s", code, out)
	}
	rec, _ = runJSON(t, dir, "--force", "count", "count")
	if got, want := statuses(rec), "words=executed count=executed"; got != want {
		t.Errorf("after change: %s, want %s", got, want)
	}
	rec, _ = runJSON(t, dir, "--force=count")
	if got, want := statuses(rec), "words=cached count=executed"; got != want {
		t.Errorf("--force count: %s, want %s", got, want)
	}
	out, _, code = pipe(t, dir, "show", "count")
	if code != 0 || !strings.Contains(out, "from stage words") || !strings.Contains(out, ".pipe/out/count/counts") {
		t.Errorf("show (exit %d):\n%s", code, out)
	}
	out, _, code = pipe(t, dir, "log")
	if code != 0 || strings.Count(out, "\n") != 5 {
		t.Errorf("log (exit %d) should list 4 runs:\n%s", code, out)
	}
	out, _, _ = pipe(t, dir, "graph")
	if !strings.Contains(out, `"words" -> "count";`) {
		t.Errorf("graph:\n%s", out)
	}
	out, _, _ = pipe(t, dir, "graph", "--format", "mermaid")
	if !strings.Contains(out, "s_words --> s_count") {
		t.Errorf("mermaid graph:\n%s", out)
	}
	out, _, code = pipe(t, dir, "gc")
	if code != 0 || !strings.Contains(out, "freed") {
		t.Errorf("gc (exit %d):\n%s", code, out)
	}
	rec, _ = runJSON(t, dir)
	if got, want := statuses(rec), "words=cached count=cached"; got != want {
		t.Errorf("after gc: %s, want %s", got, want)
	}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"pipeline.hcl": `
stage "command" "bad" {
  program = "sh"
  args    = ["-c", "echo first line; echo the reason >&2; exit 7"]
  outputs = { x = "file" }
}
stage "command" "after" {
  program = "true"
  inputs  = [stage.command.bad.x]
  outputs = { y = "file" }
}
`})
	_, stderr, code := pipe(t, dir, "run")
	if code != exitFailed {
		t.Errorf("failing stage: exit %d, want %d", code, exitFailed)
	}
	for _, want := range []string{"Command failed", "the reason", "exit status 7", `pipeline.hcl line 2`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	writeFiles(t, dir, map[string]string{"pipeline.hcl": `stage "comand" "x" {}`})
	_, stderr, code = pipe(t, dir, "run")
	if code != exitUsage || !strings.Contains(stderr, `Did you mean "command"?`) {
		t.Errorf("config error: exit %d, want %d:\n%s", code, exitUsage, stderr)
	}
	_, _, code = pipe(t, dir, "frobnicate")
	if code != exitUsage {
		t.Errorf("unknown command: exit %d, want %d", code, exitUsage)
	}
}

// slowStage writes part of its output, records its pid and that it
// started, then sleeps while the file "slow" exists.
const slowStage = `
stage "command" "slow" {
  program = "sh"
  args    = ["-c", "echo partial > {out.data}; echo $$ > pid; echo run >> runs; touch started; while [ -f slow ]; do sleep 0.05; done; echo done >> {out.data}"]
  inputs  = ["in.txt"]
  outputs = { data = "file" }
}

stage "command" "next" {
  program = "sh"
  args    = ["-c", "cat ${stage.command.slow.data} > {out.copy}"]
  inputs  = [stage.command.slow.data]
  outputs = { copy = "file" }
}
`

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkCache verifies that every object in the workspace matches its name
// and that every action entry parses and refers to present objects.
func checkCache(t *testing.T, dir string) {
	t.Helper()
	objects := filepath.Join(dir, ".pipe/cache/objects")
	n := 0
	filepath.WalkDir(objects, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() || strings.HasPrefix(de.Name(), ".tmp-") {
			return nil
		}
		d, _, err := artifacts.DigestFile(p)
		if err != nil || string(d) != de.Name() {
			t.Errorf("object %s has digest %s (%v)", de.Name(), d, err)
		}
		n++
		return nil
	})
	filepath.WalkDir(filepath.Join(dir, ".pipe/cache/actions"), func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() || strings.HasPrefix(de.Name(), ".tmp-") {
			return nil
		}
		b, _ := os.ReadFile(p)
		var a struct{ Outputs []artifacts.Artifact }
		if err := json.Unmarshal(b, &a); err != nil {
			t.Errorf("action %s: %v", de.Name(), err)
		}
		for _, o := range a.Outputs {
			if _, err := os.Stat(filepath.Join(objects, string(o.Digest[:2]), string(o.Digest))); err != nil {
				t.Errorf("action %s: output %s: %v", de.Name(), o.Name, err)
			}
		}
		return nil
	})
}

// processEnds waits until process pid is gone (or a zombie) and reports
// whether it went within d.
func processEnds(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X') {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// TestKillMidStage: a pipe run killed with SIGKILL while a stage runs
// leaves a consistent cache and no running stage program (on Linux), and
// the next run completes.
func TestKillMidStage(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"pipeline.hcl": slowStage, "in.txt": "x", "slow": ""})
	cmd := pipeCmd(dir, "run")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(dir, "started"))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if runtime.GOOS == "linux" && !processEnds(pid, 10*time.Second) {
				t.Errorf("stage program %d still runs after pipe was killed", pid)
			}
			// Elsewhere the orphan is in its own process group; stop it.
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	checkCache(t, dir)
	if _, err := os.Stat(filepath.Join(dir, ".pipe/out/slow/data")); err == nil {
		t.Error("a killed stage left a materialised output")
	}
	os.Remove(filepath.Join(dir, "slow"))
	rec, _ := runJSON(t, dir)
	if got, want := statuses(rec), "slow=executed next=executed"; got != want {
		t.Errorf("run after kill: %s, want %s", got, want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ".pipe/out/next/copy"))
	if string(b) != "partial\ndone\n" {
		t.Errorf("output after kill = %q", b)
	}
	checkCache(t, dir)
	rec, _ = runJSON(t, dir)
	if got, want := statuses(rec), "slow=cached next=cached"; got != want {
		t.Errorf("third run: %s, want %s", got, want)
	}
}

// TestConcurrentRuns: two runs at once on one workspace; the second waits
// for the lock, nothing is computed twice and nothing is corrupted;
// --no-wait fails with its own exit code while the lock is held.
func TestConcurrentRuns(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"pipeline.hcl": slowStage, "in.txt": "x", "slow": ""})
	first := pipeCmd(dir, "run", "--json")
	var out1, err1 bytes.Buffer
	first.Stdout, first.Stderr = &out1, &err1
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(dir, "started"))

	_, stderr, code := pipe(t, dir, "run", "--no-wait")
	if code != exitLocked || !strings.Contains(stderr, "locked") {
		t.Errorf("--no-wait while locked: exit %d, want %d:\n%s", code, exitLocked, stderr)
	}

	second := pipeCmd(dir, "run", "--json")
	var out2 bytes.Buffer
	var err2 syncBuffer
	second.Stdout, second.Stderr = &out2, &err2
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		// Release the first run once the second is waiting.
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(err2.String(), "waiting for the workspace lock") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		os.Remove(filepath.Join(dir, "slow"))
	})
	if err := first.Wait(); err != nil {
		t.Fatalf("first run: %v\n%s", err, err1.String())
	}
	if err := second.Wait(); err != nil {
		t.Fatalf("second run: %v\n%s", err, err2.String())
	}
	wg.Wait()
	if !strings.Contains(err2.String(), "waiting for the workspace lock") {
		t.Errorf("second run did not wait for the lock:\n%s", err2.String())
	}
	var r1, r2 engine.RunRecord
	json.Unmarshal(out1.Bytes(), &r1)
	json.Unmarshal(out2.Bytes(), &r2)
	if got := statuses(&r1) + " | " + statuses(&r2); got != "slow=executed next=executed | slow=cached next=cached" {
		t.Errorf("statuses: %s", got)
	}
	runs, _ := os.ReadFile(filepath.Join(dir, "runs"))
	if string(runs) != "run\n" {
		t.Errorf("the stage ran %d times, want once", strings.Count(string(runs), "run"))
	}
	checkCache(t, dir)
}

// syncBuffer is a bytes.Buffer that a subprocess may write while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
