stage "concot" "a" { # ERROR: Unknown stage kind
  srcs = ["notes.txt"]
}

stage "concat" "b" {
  srcs    = ["notes.txt"]
  sufix   = "x" # ERROR: Unsupported argument
}

stage "concat" "c" {
  srcs   = ["notes.txt"]
  suffix = ["not", "a", "string"] # ERROR: Incorrect attribute value type
}

stage "lines" "d" { # ERROR: Missing required argument
}

stage "concat" "e" {
  srcs   = ["notes.txt"]
  suffix = "bad" # ERROR: Invalid suffix
}
