package main

import (
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/stages/claudelogs"
	"github.com/pipeml/pipe/stages/codefim"
	"github.com/pipeml/pipe/stages/command"
	"github.com/pipeml/pipe/stages/eval"
	"github.com/pipeml/pipe/stages/lengths"
	"github.com/pipeml/pipe/stages/quality"
	"github.com/pipeml/pipe/stages/split"
	"github.com/pipeml/pipe/stages/train"
)

// builtinStages lists every built-in stage kind. Add a kind by adding its
// Definition here; nothing registers itself.
var builtinStages = []*stages.Definition{
	command.Definition,
	claudelogs.Definition,
	command.EachDefinition,
	codefim.Definition,
	quality.Definition,
	split.Definition,
	lengths.Definition,
	train.Definition,
	eval.Definition,
}

func registry() (*stages.Registry, error) {
	return stages.NewRegistry(builtinStages...)
}
