package main

// The GoMLX backends the ml stages (train, eval) run on: the pure-Go CPU
// backend and, unless built with -tags noxla, XLA (PJRT plugins such as
// CUDA's, loaded at run time by absolute path). Blank imports live here
// only (STYLE.md: keep ml isolated).
import _ "github.com/gomlx/gomlx/backends/default"
