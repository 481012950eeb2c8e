package checkpoint

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pipeml/pipe/ml/safetensors"
)

func smallConfig(modelType string, tied bool) *Config {
	c := TinyConfig()
	c.ModelType = modelType
	c.VocabSize = 96
	c.HiddenSize = 16
	c.IntermediateSize = 24
	c.TieWordEmbeddings = tied
	return c
}

func TestConfigRoundTrip(t *testing.T) {
	src := `{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":151936,"hidden_size":2048,
"intermediate_size":11008,"num_hidden_layers":36,"num_attention_heads":16,"num_key_value_heads":2,"hidden_act":"silu",
"max_position_embeddings":32768,"rope_theta":1000000.0,"rope_scaling":null,"rms_norm_eps":1e-06,"tie_word_embeddings":true,
"attention_dropout":0.0,"initializer_range":0.02,"use_sliding_window":false,"sliding_window":32768,"max_window_layers":70,
"bos_token_id":151643,"eos_token_id":151645,"torch_dtype":"bfloat16","transformers_version":"4.43.1","use_cache":true,
"custom_field":{"a":[1,2]}}`
	path := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(path, []byte(src), 0o644)
	c, err := ReadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.HeadDimension() != 128 || !c.QKVBias() || !c.TieWordEmbeddings || c.RopeTheta != 1e6 {
		t.Errorf("config = %+v", c)
	}
	if got := string(c.Extra["custom_field"]); got != `{"a":[1,2]}` {
		t.Errorf("Extra[custom_field] = %s", got)
	}
	eos, _ := TokenIDs(c.EOSTokenID)
	if len(eos) != 1 || eos[0] != 151645 {
		t.Errorf("eos = %v", eos)
	}
	out := filepath.Join(t.TempDir(), "config.json")
	if err := WriteConfig(out, c); err != nil {
		t.Fatal(err)
	}
	c2, err := ReadConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(c)
	b, _ := json.Marshal(c2)
	if !bytes.Equal(a, b) {
		t.Errorf("round trip changed the config:\n%s\n%s", a, b)
	}
	// The published 3B config and ours agree on every field the network uses.
	ref := Qwen25Coder3BConfig()
	ref.Extra = c.Extra
	r, _ := json.Marshal(ref)
	if !bytes.Equal(r, a) {
		t.Errorf("Qwen25Coder3BConfig differs from the published config:\n%s\n%s", r, a)
	}
	if got := NumParameters(ref); got != 3085938688 {
		t.Errorf("3B parameters = %d, want 3085938688", got)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ src, want string }{
		"syntax": {"{\n\"model_type\": \"qwen2\",\n  oops\n}", "config.json:3:"},
		"type":   {`{"model_type":"gpt2"}`, `model_type "gpt2" is not supported`},
		"heads":  {`{"model_type":"llama","vocab_size":8,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2}`, "multiple of num_key_value_heads"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name, "config.json")
			os.MkdirAll(filepath.Dir(path), 0o755)
			os.WriteFile(path, []byte(tc.src), 0o644)
			_, err := ReadConfig(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("ReadConfig error = %v, want one naming the file and containing %q", err, tc.want)
			}
		})
	}
}

func TestLlamaHasNoBias(t *testing.T) {
	c := smallConfig(ModelTypeLlama, false)
	for _, w := range Weights(c) {
		if strings.HasSuffix(w.Name, ".bias") {
			t.Errorf("llama weight %s", w.Name)
		}
	}
	if Weights(c)[len(Weights(c))-1].Name != "lm_head.weight" {
		t.Error("untied model has no lm_head.weight")
	}
	yes := true
	c.AttentionBias = &yes
	if err := c.Validate(); err == nil {
		t.Error("llama attention_bias (with o_proj bias) should be rejected")
	}
}

func TestWriteRandomAndOpen(t *testing.T) {
	tokDir := t.TempDir()
	os.WriteFile(filepath.Join(tokDir, "tokenizer.json"), []byte(`{"model":{}}`), 0o644)
	os.WriteFile(filepath.Join(tokDir, "tokenizer_config.json"), []byte(`{}`), 0o644)
	for _, tc := range []struct {
		name  string
		cfg   *Config
		dt    safetensors.DType
		shard int64
	}{
		{"qwen2 tied bf16", smallConfig(ModelTypeQwen2, true), safetensors.BF16, 0},
		{"llama untied f32 sharded", smallConfig(ModelTypeLlama, false), safetensors.F32, 8000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := RandomOptions{Seed: 7, DType: tc.dt, TokenizerDir: tokDir, MaxShardBytes: tc.shard}
			if err := WriteRandom(dir, tc.cfg, opts); err != nil {
				t.Fatal(err)
			}
			m, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if !m.HasTokenizer() || len(m.Tokenizer) != 2 {
				t.Errorf("tokenizer files = %v", m.Tokenizer)
			}
			if tc.shard > 0 && len(m.Weights.Files()) < 2 {
				t.Errorf("expected several shards, got %d", len(m.Weights.Files()))
			}
			emb, _ := m.Tensor("model.embed_tokens.weight")
			v, _ := emb.Float32()
			var sum, sq float64
			for _, x := range v {
				sum += float64(x)
				sq += float64(x) * float64(x)
			}
			mean, std := sum/float64(len(v)), math.Sqrt(sq/float64(len(v)))
			if math.Abs(mean) > 0.003 || math.Abs(std-0.02) > 0.002 {
				t.Errorf("embedding mean %g std %g, want 0 and 0.02", mean, std)
			}
			norm, _ := m.Tensor("model.norm.weight")
			if nv, _ := norm.Float32(); nv[0] != 1 || nv[len(nv)-1] != 1 {
				t.Errorf("norm = %v", nv)
			}
			if tc.cfg.QKVBias() {
				b, _ := m.Tensor("model.layers.1.self_attn.k_proj.bias")
				if bv, _ := b.Float32(); bv[0] != 0 {
					t.Errorf("bias = %v, want zeros", bv)
				}
			}
			// Same seed, same bytes; another seed, other weights.
			dir2 := t.TempDir()
			WriteRandom(dir2, tc.cfg, opts)
			opts.Seed = 8
			dir3 := t.TempDir()
			WriteRandom(dir3, tc.cfg, opts)
			for _, f := range m.Weights.Files() {
				name := filepath.Base(f.Path())
				a, _ := os.ReadFile(f.Path())
				b, _ := os.ReadFile(filepath.Join(dir2, name))
				c, _ := os.ReadFile(filepath.Join(dir3, name))
				if !bytes.Equal(a, b) {
					t.Errorf("%s differs for the same seed", name)
				}
				if bytes.Equal(a, c) {
					t.Errorf("%s is the same for another seed", name)
				}
			}
		})
	}
}

func TestOpenReportsMissingAndMisshapen(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig(ModelTypeQwen2, true)
	if err := WriteRandom(dir, cfg, RandomOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg.NumHiddenLayers = 3
	WriteConfig(filepath.Join(dir, ConfigFile), cfg)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), `missing weight "model.layers.2.self_attn.q_proj.weight"`) {
		t.Errorf("Open error = %v", err)
	}
	cfg.NumHiddenLayers = 2
	cfg.IntermediateSize = 32
	WriteConfig(filepath.Join(dir, ConfigFile), cfg)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), `"model.layers.0.mlp.gate_proj.weight" has shape [24 16], config.json implies [32 16]`) {
		t.Errorf("Open error = %v", err)
	}
}

func TestEnsureTiny(t *testing.T) {
	t.Setenv("PIPE_TOKENIZER", t.TempDir()) // no tokenizer.json there
	cache := t.TempDir()
	dir, err := EnsureTiny(cache)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Config.VocabSize != 151936 || m.Config.HiddenSize != TinyConfig().HiddenSize {
		t.Errorf("tiny config = %+v", m.Config)
	}
	emb, _ := m.Tensor("model.embed_tokens.weight")
	if emb.DType != safetensors.F32 {
		t.Errorf("tiny dtype = %s, want F32", emb.DType)
	}
	first, _ := os.ReadFile(filepath.Join(dir, safetensors.SingleFile))
	// A second call reuses the folder; a fresh cache gets the same bytes.
	if again, err := EnsureTiny(cache); err != nil || again != dir {
		t.Errorf("second EnsureTiny = %q, %v", again, err)
	}
	other, err := EnsureTiny(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(filepath.Join(other, safetensors.SingleFile))
	if !bytes.Equal(first, second) {
		t.Error("EnsureTiny is not deterministic")
	}
}

// TestTransformers5Rope checks that the rotary settings transformers 5
// writes (rope_parameters, rope_scaling with rope_type "default", no
// top-level rope_theta) load as the same theta, and that real scaling is
// refused.
func TestTransformers5Rope(t *testing.T) {
	base := `"model_type":"qwen2","vocab_size":96,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"hidden_act":"silu","rms_norm_eps":1e-6`
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		src     string
		theta   float64
		wantErr string
	}{
		"v4":      {`{` + base + `,"rope_theta":1000000.0,"rope_scaling":null}`, 1e6, ""},
		"v5":      {`{` + base + `,"rope_parameters":{"rope_theta":1000000.0,"rope_type":"default"},"rope_scaling":{"rope_type":"default","rope_theta":1000000.0}}`, 1e6, ""},
		"default": {`{` + base + `}`, 10000, ""},
		"yarn":    {`{` + base + `,"rope_parameters":{"rope_theta":1000000.0,"rope_type":"yarn","factor":4}}`, 0, `rope_type "yarn" is not supported`},
		"scaled":  {`{` + base + `,"rope_theta":1000000.0,"rope_scaling":{"type":"linear","factor":2}}`, 0, "rope_scaling"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name, "config.json")
			os.MkdirAll(filepath.Dir(path), 0o755)
			os.WriteFile(path, []byte(tc.src), 0o644)
			c, err := ReadConfig(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ReadConfig error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.RopeTheta != tc.theta {
				t.Errorf("RopeTheta = %g, want %g", c.RopeTheta, tc.theta)
			}
		})
	}
}
