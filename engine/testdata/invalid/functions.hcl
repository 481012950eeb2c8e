stage "concat" "x" {
  srcs   = ["notes.txt"]
  suffix = env("PIPE_TEST_UNSET") # ERROR: Error in function call
}

stage "concat" "y" {
  srcs   = ["notes.txt"]
  suffix = file("does-not-exist") # ERROR: Error in function call
}

stage "concat" "z" {
  srcs   = ["notes.txt"]
  suffix = nosuchfunc("a") # ERROR: Call to unknown function
}
