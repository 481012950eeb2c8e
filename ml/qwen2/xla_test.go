//go:build xla

package qwen2

// Linking the XLA backend into the test binary (for the GPU tests).
import _ "github.com/gomlx/go-xla/compute/xla"
