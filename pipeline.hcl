# The pipe project's pipeline. `pipe run` (or `go tool task run`) brings every
# stage up to date; a second run with nothing changed executes nothing.
#
# For now it describes the repository's own Go sources with two command
# stages; the data (claude_logs, code_fim, quality, split) and train stages
# are wired in here as they land.

variable "source_glob" {
  type        = string
  default     = "**/*.go"
  description = "Which source files the inventory covers."
}

locals {
  sources = glob(var.source_glob)
}

# One line per source file: its line count and path.
stage "command" "inventory" {
  program = "sh"
  args    = concat(["-c", "wc -l \"$@\" | grep -v ' total$' | sort -k2 > {out.lines}", "inventory"], local.sources)
  inputs  = local.sources
  outputs = { lines = "file" }
}

# Line totals per top-level folder, from the inventory.
stage "command" "summary" {
  program = "sh"
  args = [
    "-c", "awk '{ split($2, p, \"/\"); n[p[1]] += $1 } END { for (k in n) print n[k], k }' \"$1\" | sort -k2 > \"$2\"",
    "summary", stage.command.inventory.lines, "{out.report}",
  ]
  inputs  = [stage.command.inventory.lines]
  outputs = { report = "file" }
  env     = { LC_ALL = "C" }
}
