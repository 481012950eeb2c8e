package train

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveBackend(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "xla_cuda_plugin.so")
	if err := os.WriteFile(plugin, []byte("not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOMLX_BACKEND", "")
	os.Unsetenv("GOMLX_BACKEND")
	t.Setenv(PluginEnv, "")
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", "")
	t.Setenv("HOME", dir)
	t.Setenv("VIRTUAL_ENV", "")

	for _, c := range []struct {
		spec, plugin, want string
	}{
		{"go", "", GoBackend},
		{"cpu", plugin, GoBackend},
		{"cuda", plugin, "xla:" + plugin + ",preallocate=false"},
		{"auto", plugin, "xla:" + plugin + ",preallocate=false"},
		{"xla:/abs/x.so", "", "xla:/abs/x.so"},
		// The pure-Go backend by its bare name runs its ops sequentially
		// (see GoBackend); an explicit mode is kept.
		{"go:ops_parallel", "", "go:ops_parallel"},
	} {
		got, err := ResolveBackend(c.spec, c.plugin, "preallocate=false")
		if err != nil || got.Config != c.want {
			t.Errorf("ResolveBackend(%q, %q) = %q, %v; want %q", c.spec, c.plugin, got.Config, err, c.want)
		}
	}
	// GOMLX_BACKEND=go (as the Taskfile sets for tests) must not bring
	// back the parallel mode that deadlocks.
	t.Setenv("GOMLX_BACKEND", "go")
	if got, err := ResolveBackend("auto", "", ""); err != nil || got.Config != GoBackend {
		t.Errorf("auto with GOMLX_BACKEND=go: %q, %v; want %q", got.Config, err, GoBackend)
	}
	os.Unsetenv("GOMLX_BACKEND")
	t.Setenv(PluginEnv, plugin)
	if got, err := ResolveBackend("cuda", "", ""); err != nil || got.Config != "xla:"+plugin {
		t.Errorf("with $%s: %q, %v", PluginEnv, got.Config, err)
	}
	t.Setenv(PluginEnv, "")

	// Found through PJRT_PLUGIN_LIBRARY_PATH.
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
	if got, err := ResolveBackend("gpu", "", ""); err != nil || got.Config != "xla:"+plugin {
		t.Errorf("with PJRT_PLUGIN_LIBRARY_PATH: %q, %v", got.Config, err)
	}
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", "")

	// A missing plugin says what to install (unless this machine has one
	// in a system location).
	if FindCUDAPlugin() == "" {
		_, err := ResolveBackend("cuda", "", "")
		if err == nil || !strings.Contains(err.Error(), "install") {
			t.Errorf("no plugin: err = %v, want advice on what to install", err)
		}
	}
	if _, err := ResolveBackend("cuda", filepath.Join(dir, "missing.so"), ""); err == nil {
		t.Error("a missing explicit plugin was accepted")
	}
	// A plugin by name would let go-xla download.
	t.Setenv("GOMLX_NO_AUTO_INSTALL", "")
	os.Unsetenv("GOMLX_NO_AUTO_INSTALL")
	if _, err := ResolveBackend("xla:cuda", "", ""); err == nil {
		t.Error("xla:cuda accepted without GOMLX_NO_AUTO_INSTALL")
	}
}
