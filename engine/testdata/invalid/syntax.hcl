stage "concat" "x" {
  srcs = ["notes.txt"
} # ERROR: Missing item separator
