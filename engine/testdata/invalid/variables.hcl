variable "needed" { # ERROR: No value for required variable
  type = string
}

variable "typed" {
  type    = number
  default = "not a number" # ERROR: Invalid default value
}

variable "typed" { # ERROR: Duplicate variable
  default = 1
}

locals {
  a = local.b # ERROR: Cycle in local values
  b = local.a
}
