package train

import (
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// BatchNodes are a micro-batch's inputs inside a graph, each [rows, len]:
// token ids, position ids (restarting per document), segment ids (1, 2, ...
// per document of a row, 0 for padding), next-token targets (int32) and
// loss weights (float32, 0 or 1). See Batch.
type BatchNodes struct {
	IDs, Positions, Segments, Targets, Weights *graph.Node
}

// Model is the network the loop trains.
type Model struct {
	// Store holds every variable of the network. The loop adds its own
	// (optimiser moments, accumulators) under the scope /train.
	Store *model.Store
	// Trainable are the variables the loop updates, in a fixed order.
	// Every other variable is left untouched.
	Trainable []*model.Variable
	// Loss builds the sum over the batch of Weights times the cross
	// entropy of Targets, in float32, as a scalar. training is true in the
	// training step (dropout on) and false in evaluation. It may use the
	// Store's random number generator (its state is checkpointed).
	Loss func(g *graph.Graph, b BatchNodes, training bool) *graph.Node
	// SaveAdapter writes the trainable weights, as they are in Store, in
	// the model's export format (e.g. a PEFT adapter) into the folder dir,
	// which exists and is empty.
	SaveAdapter func(dir string) error
}
