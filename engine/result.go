package engine

import (
	"time"

	"github.com/pipeml/pipe/artifacts"
)

// Status is the outcome of one stage in a run, or what a plan expects.
type Status string

// The statuses of a stage.
const (
	// StatusCached: the outputs came from the cache; nothing ran.
	StatusCached Status = "cached"
	// StatusExecuted: the stage ran and its outputs were stored.
	StatusExecuted Status = "executed"
	// StatusFailed: the stage ran and failed.
	StatusFailed Status = "failed"
	// StatusSkipped: a stage upstream failed, so this one did not run.
	StatusSkipped Status = "skipped"
	// StatusCancelled: the run was cancelled before or while the stage ran.
	StatusCancelled Status = "cancelled"
	// StatusWillRun: (plan only) the stage would run.
	StatusWillRun Status = "will-run"
)

// ItemCounts are the item statistics of a map stage.
type ItemCounts struct {
	Total     int `json:"total"`
	Processed int `json:"processed"`
	Reused    int `json:"reused"`
}

// StageResult is one stage's line in a run (or plan) summary. Its JSON
// form is part of the `pipe run --json` and `pipe plan --json` output.
type StageResult struct {
	// Name and Kind of the stage.
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Key is the action key (64 hex digits); empty when it could not be
	// computed (a plan whose upstream stages will run).
	Key    string `json:"action_key,omitempty"`
	Status Status `json:"status"`
	// Why lists the reasons the stage ran (or would run), or why it was
	// cached: which part of the key changed.
	Why     []string `json:"why,omitempty"`
	Seconds float64  `json:"seconds"`
	// Items is set for map stages that ran.
	Items *ItemCounts `json:"items,omitempty"`
	// Outputs with their digests and materialised paths.
	Outputs []artifacts.Artifact `json:"outputs,omitempty"`
	// Inputs as the stage saw them (lineage).
	Inputs []InputState `json:"inputs,omitempty"`
	// Summary holds the stage's own headline numbers.
	Summary map[string]any `json:"summary,omitempty"`
	// Error is the failure message.
	Error string `json:"error,omitempty"`
	// Err is the failure itself: an error or hcl.Diagnostics.
	Err error `json:"-"`
}

// OK reports whether the stage produced its outputs.
func (r *StageResult) OK() bool { return r.Status == StatusCached || r.Status == StatusExecuted }

// RunRecord is the record of one run, kept under runs/ in the workspace
// and printed by `pipe run --json`.
type RunRecord struct {
	ID       string         `json:"id"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Seconds  float64        `json:"seconds"`
	OK       bool           `json:"ok"`
	Targets  []string       `json:"targets,omitempty"`
	Stages   []*StageResult `json:"stages"`
}

// Counts returns how many stages ended in each status.
func (r *RunRecord) Counts() map[Status]int {
	m := map[Status]int{}
	for _, s := range r.Stages {
		m[s.Status]++
	}
	return m
}

// Hook receives progress events of a run. Methods are called from several
// goroutines and must be safe for concurrent use.
type Hook interface {
	// StageStarted is called when a stage takes a parallelism slot.
	StageStarted(name string)
	// StageProgress reports the items done of a map stage.
	StageProgress(name string, done, total int)
	// StageFinished is called once per selected stage, whatever its status.
	StageFinished(r *StageResult)
}

// NopHook ignores every event.
type NopHook struct{}

func (NopHook) StageStarted(string)            {}
func (NopHook) StageProgress(string, int, int) {}
func (NopHook) StageFinished(*StageResult)     {}

var _ Hook = NopHook{}
