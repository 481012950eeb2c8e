# Every feature of the language at once.
variable "prefix" {
  type        = string
  default     = "p:"
  description = "Prefix of each line."
}

variable "extra" {
  type    = list(string)
  default = []
}

variable "n" {
  type    = number
  default = 3
}

locals {
  logs   = "logs"
  notes  = pathjoin(".", "notes.txt")
  suffix = format("%s-%d", upper(var.prefix), var.n * 2)
  all    = concat(glob("logs/**/*.log"), var.extra)
}

locals {
  derived = "${local.suffix}/${basename(local.notes)}/${dirname("a/b")}"
}

workspace {
  dir         = ".pipe"
  parallelism = 2
}

stage "lines" "count" {
  dir    = local.logs
  prefix = var.prefix
}

stage "concat" "notes" {
  srcs       = concat(local.all, [local.notes])
  suffix     = local.derived
  depends_on = [stage.lines.count]
}

stage "concat" "joined" {
  srcs   = [stage.lines.count.out, stage.concat.notes.out, "logs/*.log"]
  suffix = env("PIPE_TEST_UNSET", "default")
}

stage "tree" "folder" {
  srcs = [stage.concat.joined.out]
}

stage "concat" "from_folder" {
  srcs = ["${stage.tree.folder.dir}/sub/0.txt"]
}
