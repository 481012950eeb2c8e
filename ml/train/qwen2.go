package train

import (
	"github.com/gomlx/gomlx/core/graph"
	"github.com/pipeml/pipe/ml/qwen2"
)

// Qwen2 adapts a qwen2.Model that has a LoRA adapter to the loop:
// the adapter's variables are trained, the loss is qwen2's chunked
// cross-entropy, and adapters are exported in PEFT's format with
// baseModel as base_model_name_or_path. packed says whether rows hold
// several documents (Pack): then segment ids go to the attention mask;
// otherwise (Bucket, one document a row, padding at the end) attention is
// plain causal, the cheapest fused path.
func Qwen2(m *qwen2.Model, baseModel string, packed bool) *Model {
	return &Model{
		Store:     m.Store,
		Trainable: m.TrainableVariables(),
		Loss: func(g *graph.Graph, b BatchNodes, training bool) *graph.Node {
			qb := qwen2.Batch{Tokens: b.IDs, Positions: b.Positions}
			if packed {
				qb.Segments = b.Segments
			}
			sum, _ := m.Loss(qb, b.Targets, b.Weights)
			return sum
		},
		SaveAdapter: func(dir string) error { return m.ExportAdapter(dir, baseModel) },
	}
}
