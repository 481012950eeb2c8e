package train

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const killHelperEnv = "PIPE_TRAIN_KILL_HELPER_DIR"

// TestKillHelper is the child process of TestKillAndResume: a training
// run slowed down between steps so that the parent can kill it mid-run.
func TestKillHelper(t *testing.T) {
	dir := os.Getenv(killHelperEnv)
	if dir == "" {
		t.Skip("child process of TestKillAndResume")
	}
	opts := tinyOptions(t, newTinyModel(t, 1, 0.1), dir)
	opts.AfterStep = func(int) { time.Sleep(40 * time.Millisecond) }
	if _, err := Train(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
}

func TestKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	full := t.TempDir()
	if _, err := Train(t.Context(), tinyOptions(t, newTinyModel(t, 1, 0.1), full)); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it (SIGKILL, no chance to clean up) once it has written its
	// second checkpoint and gone on a little.
	deadline := time.Now().Add(60 * time.Second)
	for {
		cps, _ := listCheckpoints(filepath.Join(dir, CheckpointsDir))
		if len(cps) >= 2 {
			time.Sleep(60 * time.Millisecond)
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the child wrote no checkpoint in time; output:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(dir, LastDir)); err == nil {
		t.Fatal("the child finished before it was killed; slow it down")
	}
	rep, err := Train(t.Context(), tinyOptions(t, newTinyModel(t, 1, 0.1), dir))
	if err != nil {
		t.Fatal(err)
	}
	if rep.ResumedAtStep == 0 {
		t.Fatal("the second run did not resume")
	}
	if !bytes.Equal(readAdapter(t, full), readAdapter(t, dir)) {
		t.Fatalf("the adapter after kill (at step > %d) and resume differs from the uninterrupted run's", rep.ResumedAtStep)
	}
	// metrics.jsonl has each step once.
	ms, err := ReadMetrics(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, m := range ms {
		if m.Loss == nil {
			continue
		}
		if seen[m.Step] {
			t.Errorf("step %d twice in metrics.jsonl", m.Step)
		}
		seen[m.Step] = true
	}
	if len(seen) != rep.Steps {
		t.Errorf("metrics.jsonl has %d steps, want %d", len(seen), rep.Steps)
	}
}
