stage "concat" "a" {
  srcs = [stage.concat.nope.out] # ERROR: Reference to undeclared stage
}

stage "concat" "b" {
  srcs = [stage.lines.c.out] # ERROR: Reference to undeclared stage
}

stage "concat" "ok" {
  srcs = ["notes.txt"]
}

stage "concat" "c" {
  srcs = [stage.concat.ok.output] # ERROR: Unknown stage output
}

stage "concat" "d" {
  srcs       = ["notes.txt"]
  depends_on = [stage.concat.zzz] # ERROR: Reference to undeclared stage
}

stage "concat" "e" {
  srcs = ["missing.txt"] # ERROR: Missing input path
}

stage "concat" "f" {
  srcs = ["logs/*.nothing"] # ERROR: Input glob matches nothing
}

stage "concat" "g" {
  srcs = [stage.concat.g.out] # ERROR: Stage refers to itself
}
