package train

import (
	"fmt"
	"math"
)

// Schedule is the learning-rate schedule's shape.
type Schedule string

// The schedules of Hugging Face's get_scheduler that the loop offers.
const (
	Cosine   Schedule = "cosine"
	Linear   Schedule = "linear"
	Constant Schedule = "constant"
)

// ParseSchedule checks s.
func ParseSchedule(s string) (Schedule, error) {
	switch Schedule(s) {
	case Cosine, Linear, Constant:
		return Schedule(s), nil
	}
	return "", fmt.Errorf("unknown schedule %q: want \"cosine\", \"linear\" or \"constant\"", s)
}

// WarmupSteps is Hugging Face's TrainingArguments.get_warmup_steps:
// ceil(ratio · total).
func WarmupSteps(ratio float64, total int) int {
	return int(math.Ceil(ratio * float64(total)))
}

// LearningRate is the rate of the optimiser step that follows `done`
// completed steps, as transformers' schedulers compute it (LambdaLR with
// the scheduler stepped after each optimiser step, so the first step of
// a warm-up runs at rate 0).
func LearningRate(s Schedule, peak float64, done, warmup, total int) float64 {
	if done < warmup {
		return peak * float64(done) / float64(max(1, warmup))
	}
	switch s {
	case Constant:
		return peak
	case Linear:
		return peak * max(0, float64(total-done)/float64(max(1, total-warmup)))
	default: // cosine with num_cycles 0.5
		progress := float64(done-warmup) / float64(max(1, total-warmup))
		return peak * max(0, 0.5*(1+math.Cos(math.Pi*progress)))
	}
}
