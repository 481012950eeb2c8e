//go:build xla

package eval

// Linking the XLA backend into the test binary (for the GPU benchmark).
import _ "github.com/gomlx/go-xla/compute/xla"
