stage "concat" { # ERROR: Missing name for stage
}

stage "concat" "bad name!" { # ERROR: Invalid stage label
}

pipeline "x" { # ERROR: Unsupported block type
}

stage "concat" "y" {
  srcs       = ["notes.txt"]
  depends_on = ["stage.concat.x"] # ERROR: Invalid depends_on reference
}

workspace {
  parallelism = 0 # ERROR: Invalid parallelism
}

stage "concat" "y" { # ERROR: Duplicate stage name
  srcs = ["notes.txt"]
}
