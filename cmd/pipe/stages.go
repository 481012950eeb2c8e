package main

import (
	"github.com/pipeml/pipe/stages"
	"github.com/pipeml/pipe/stages/command"
)

// builtinStages lists every built-in stage kind. Add a kind by adding its
// Definition here; nothing registers itself.
var builtinStages = []*stages.Definition{
	command.Definition,
}

func registry() (*stages.Registry, error) {
	return stages.NewRegistry(builtinStages...)
}
