package train

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gomlx/compute"
)

// PluginEnv names an environment variable that gives the path of a PJRT
// CUDA plugin (.so) to use.
const PluginEnv = "PIPE_PJRT_PLUGIN"

// GoBackend is the configuration of the pure-Go CPU backend. Its ops run
// one after another: with ops running in parallel, GoMLX v0.28.2's Go
// backend can deadlock when several large matmuls (the chunked loss over
// a 151,936-token vocabulary) start together and each waits in
// workerspool.Saturate for workers the others hold. Each matmul still uses
// every core.
const GoBackend = "go:ops_sequential"

// BackendChoice is a resolved backend: the GoMLX configuration string and
// why it was chosen.
type BackendChoice struct {
	Config string
	Reason string
}

// pluginNames are the file names of the CUDA PJRT plugin: go-xla's
// installer and JAX's jax-cuda*-plugin wheels.
var pluginNames = []string{"pjrt_c_api_cuda_plugin.so", "xla_cuda_plugin.so"}

// pluginGlobs are the usual places a CUDA PJRT plugin is installed, in
// order of preference.
func pluginGlobs() []string {
	var dirs []string
	for _, d := range filepath.SplitList(os.Getenv("PJRT_PLUGIN_LIBRARY_PATH")) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	home, _ := os.UserHomeDir()
	if home != "" {
		dirs = append(dirs, filepath.Join(home, ".local/lib/go-xla"), filepath.Join(home, ".local/lib/go-xla/nvidia"))
	}
	dirs = append(dirs, "/usr/local/lib/go-xla", "/usr/local/lib/go-xla/nvidia", "/usr/local/lib/gomlx/pjrt")
	var globs []string
	for _, d := range dirs {
		for _, n := range pluginNames {
			globs = append(globs, filepath.Join(d, n))
		}
	}
	// JAX's CUDA plugin wheels (jax-cuda12-plugin, jax-cuda13-plugin) in
	// virtual environments and system site-packages.
	var sites []string
	if v := os.Getenv("VIRTUAL_ENV"); v != "" {
		sites = append(sites, filepath.Join(v, "lib/python3*/site-packages"))
	}
	if home != "" {
		sites = append(sites, filepath.Join(home, ".local/lib/python3*/site-packages"))
	}
	sites = append(sites,
		"/opt/*/.venv/lib/python3*/site-packages", "/opt/*/lib/python3*/site-packages",
		"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
		"/usr/lib/python3*/dist-packages", "/usr/lib/python3/dist-packages")
	for _, s := range sites {
		globs = append(globs, filepath.Join(s, "jax_plugins/xla_cuda*/xla_cuda_plugin.so"))
	}
	return globs
}

// FindCUDAPlugin returns the first CUDA PJRT plugin found in the usual
// install locations, or "".
func FindCUDAPlugin() string {
	for _, g := range pluginGlobs() {
		ms, _ := filepath.Glob(g)
		slices.Sort(ms)
		// The newest CUDA (e.g. xla_cuda13 over xla_cuda12) first.
		slices.Reverse(ms)
		for _, m := range ms {
			if st, err := os.Stat(m); err == nil && !st.IsDir() {
				return m
			}
		}
	}
	return ""
}

// hasNVIDIAGPU reports whether the machine has an NVIDIA driver loaded.
func hasNVIDIAGPU() bool {
	for _, p := range []string{"/proc/driver/nvidia/version", "/dev/nvidia0"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

const installHint = "install a CUDA PJRT plugin, e.g. `pip install jax[cuda13]` (its jax_plugins/xla_cuda13/xla_cuda_plugin.so is found in site-packages) " +
	"or go-xla's plugin in /usr/local/lib/go-xla, then set backend = \"cuda\" and, if it is elsewhere, pjrt_plugin = \"/path/to/plugin.so\" " +
	"(or " + PluginEnv + "); or set backend = \"go\" to train on the CPU"

// ResolveBackend turns the backend parameter into a GoMLX configuration:
//
//   - "go" or "cpu": the pure-Go backend;
//   - "cuda" or "gpu": XLA with a CUDA PJRT plugin: plugin if given, else
//     $PIPE_PJRT_PLUGIN, else the first found in the usual locations
//     (PJRT_PLUGIN_LIBRARY_PATH, ~/.local/lib/go-xla, /usr/local/lib/go-xla,
//     JAX's jax_plugins in Python site-packages); an error that says what
//     to install when there is none;
//   - "auto" (or ""): an explicit plugin or $GOMLX_BACKEND when set, else
//     "cuda" when the machine has an NVIDIA GPU, else "go";
//   - anything else ("xla:/abs/path.so,...") is passed to GoMLX as is.
//
// xlaOptions (e.g. "preallocate=false") is appended to XLA
// configurations. A plugin is always given by absolute path, so go-xla
// never tries to download one; an XLA configuration that names a plugin
// by name is refused unless GOMLX_NO_AUTO_INSTALL is set.
func ResolveBackend(spec, plugin, xlaOptions string) (BackendChoice, error) {
	if plugin == "" {
		plugin = os.Getenv(PluginEnv)
	}
	withOpts := func(c string) string {
		if xlaOptions != "" {
			return c + "," + xlaOptions
		}
		return c
	}
	cuda := func(why string) (BackendChoice, error) {
		p := plugin
		if p == "" {
			p = FindCUDAPlugin()
			if p == "" {
				return BackendChoice{}, fmt.Errorf("no CUDA PJRT plugin found (%s): %s", why, installHint)
			}
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return BackendChoice{}, err
		}
		if _, err := os.Stat(abs); err != nil {
			return BackendChoice{}, fmt.Errorf("PJRT plugin %s: %v; %s", abs, err, installHint)
		}
		return BackendChoice{Config: withOpts("xla:" + abs), Reason: why}, nil
	}
	switch strings.ToLower(spec) {
	case "go", "cpu":
		return BackendChoice{Config: GoBackend, Reason: "backend = " + spec}, nil
	case "cuda", "gpu":
		return cuda("backend = " + spec)
	case "", "auto":
		if plugin != "" {
			return cuda("pjrt_plugin is set")
		}
		if env := os.Getenv(compute.ConfigEnvVar); env != "" {
			return checkXLAConfig(env, "$"+compute.ConfigEnvVar)
		}
		if hasNVIDIAGPU() {
			return cuda("an NVIDIA GPU is present")
		}
		return BackendChoice{Config: GoBackend, Reason: "no GPU found"}, nil
	}
	return checkXLAConfig(spec, "backend = "+spec)
}

func checkXLAConfig(c, why string) (BackendChoice, error) {
	name, rest, _ := strings.Cut(c, ":")
	if name == "go" && !strings.Contains(rest, "ops_") {
		// The pure-Go backend named without an execution mode (for example
		// GOMLX_BACKEND=go) gets the sequential mode, whose reason is in
		// GoBackend's documentation; other options are kept.
		cfg := GoBackend
		if rest != "" {
			cfg += "," + rest
		}
		return BackendChoice{Config: cfg, Reason: why}, nil
	}
	if name == "xla" || name == "stablehlo" || name == "hlo" || name == "shlo" {
		plugin, _, _ := strings.Cut(rest, ",")
		if !filepath.IsAbs(plugin) {
			if _, ok := os.LookupEnv("GOMLX_NO_AUTO_INSTALL"); !ok {
				return BackendChoice{}, fmt.Errorf("%s names the XLA plugin %q by name, which lets go-xla download plugins; give its absolute path, or set GOMLX_NO_AUTO_INSTALL=1", why, plugin)
			}
		}
	}
	return BackendChoice{Config: c, Reason: why}, nil
}

// OpenBackend resolves spec (see ResolveBackend) and starts the backend.
// The backend's package must be linked into the program (cmd/pipe
// imports the default backends).
func OpenBackend(spec, plugin, xlaOptions string) (compute.Backend, BackendChoice, error) {
	ch, err := ResolveBackend(spec, plugin, xlaOptions)
	if err != nil {
		return nil, ch, err
	}
	name, _, _ := strings.Cut(ch.Config, ":")
	if !slices.Contains(compute.List(), name) {
		return nil, ch, fmt.Errorf("backend %q (%s) is not linked into this program (backends: %v); build without the noxla tag for XLA", name, ch.Reason, compute.List())
	}
	b, err := compute.NewWithConfig(ch.Config)
	if err != nil {
		return nil, ch, fmt.Errorf("start backend %s (%s): %w", ch.Config, ch.Reason, err)
	}
	return b, ch, nil
}
