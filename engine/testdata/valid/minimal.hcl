stage "concat" "one" {
  srcs = ["notes.txt"]
}
