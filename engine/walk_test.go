package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// waitProject has n independent "wait" stages and one that depends on all.
func waitProject(t *testing.T, n int, release chan struct{}, running, peak *atomic.Int64) *project {
	var b strings.Builder
	var refs []string
	for i := range n {
		fmt.Fprintf(&b, "stage \"wait\" \"w%d\" {\n  tag = \"%d\"\n}\n", i, i)
		refs = append(refs, fmt.Sprintf("stage.wait.w%d.out", i))
	}
	fmt.Fprintf(&b, "stage \"wait\" \"last\" {\n  after = [%s]\n}\n", strings.Join(refs, ", "))
	c := &counters{}
	p := newProject(t, map[string]string{"pipeline.hcl": b.String()}, testKinds(c, release, running, peak)...)
	p.c = c
	return p
}

func TestWalkParallelismBound(t *testing.T) {
	for _, j := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(j), func(t *testing.T) {
			release := make(chan struct{})
			var running, peak atomic.Int64
			p := waitProject(t, 6, release, &running, &peak)
			done := make(chan error, 1)
			go func() {
				_, err := p.run(t.Context(), Options{Parallelism: j})
				done <- err
			}()
			// Wait until j stages run at once, then let them all finish.
			deadline := time.After(10 * time.Second)
			for running.Load() < int64(j) {
				select {
				case <-deadline:
					t.Fatalf("only %d stages running, want %d", running.Load(), j)
				case <-time.After(time.Millisecond):
				}
			}
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := peak.Load(); got != int64(j) {
				t.Errorf("peak concurrency = %d, want %d", got, j)
			}
			if got := p.c.runs.Load(); got != 7 {
				t.Errorf("runs = %d, want 7", got)
			}
		})
	}
}

// A stage waiting for its dependencies holds no slot: with -j 1, a chain
// whose head waits for a slow independent stage still completes.
func TestWalkWaitingHoldsNoSlot(t *testing.T) {
	release := make(chan struct{})
	close(release)
	p := waitProject(t, 3, release, nil, nil)
	rec, err := p.run(t.Context(), Options{Parallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Order: every w<i> before last.
	var order []string
	for _, s := range rec.Stages {
		order = append(order, s.Name)
	}
	if got, want := strings.Join(order, ","), "w0,w1,w2,last"; got != want {
		t.Errorf("order = %s, want %s", got, want)
	}
}

func TestWalkCancel(t *testing.T) {
	release := make(chan struct{}) // never closed
	var running, peak atomic.Int64
	p := waitProject(t, 4, release, &running, &peak)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan *RunRecord, 1)
	go func() {
		rec, err := p.run(ctx, Options{Parallelism: 2})
		var re *RunError
		if !errors.As(err, &re) || !re.Cancelled {
			t.Errorf("err = %v, want a cancelled RunError", err)
		}
		done <- rec
	}()
	for running.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case rec := <-done:
		c := rec.Counts()
		if c[StatusCancelled]+c[StatusSkipped] != 5 || c[StatusExecuted] != 0 {
			t.Errorf("counts = %v, want every stage cancelled or skipped", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
	// Nothing of the cancelled run is in the cache: the next run executes all.
	release2 := make(chan struct{})
	close(release2)
	p2 := newProject(t, nil, testKinds(p.c, release2, nil, nil)...)
	p2.dir, p2.ws = p.dir, nil
	rec, err := p2.run(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Counts()[StatusExecuted]; got != 5 {
		t.Errorf("executed after cancel = %d, want 5", got)
	}
}

func TestWalkFailFast(t *testing.T) {
	src := `
stage "fail" "bad" {}
stage "wait" "slow" {}
stage "concat" "after" {
  srcs = [stage.wait.slow.out]
}
`
	for _, failFast := range []bool{false, true} {
		t.Run(fmt.Sprint("failfast=", failFast), func(t *testing.T) {
			release := make(chan struct{})
			c := &counters{}
			var running, peak atomic.Int64
			p := newProject(t, map[string]string{"pipeline.hcl": src}, testKinds(c, release, &running, &peak)...)
			go func() {
				// Let the slow stage finish only once the failure had time to
				// cancel it.
				for running.Load() == 0 {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
				close(release)
			}()
			rec, err := p.run(t.Context(), Options{Parallelism: 2, FailFast: failFast})
			if err == nil {
				t.Fatal("run succeeded, want a failure")
			}
			got := map[string]Status{}
			for _, s := range rec.Stages {
				got[s.Name] = s.Status
			}
			want := map[string]Status{"bad": StatusFailed, "slow": StatusExecuted, "after": StatusExecuted}
			if failFast {
				want = map[string]Status{"bad": StatusFailed, "slow": StatusCancelled, "after": StatusCancelled}
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s: status %s, want %s", k, got[k], v)
				}
			}
		})
	}
}
