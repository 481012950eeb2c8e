stage "concat" "b" {
  srcs = [stage.concat.a.out]
}

stage "concat" "c" {
  srcs = [stage.concat.b.out]
}

stage "concat" "a" {
  srcs = [stage.concat.c.out] # ERROR: Dependency cycle
}
