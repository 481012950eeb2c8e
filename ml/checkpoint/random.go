package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
	"github.com/pipeml/pipe/ml/safetensors"
)

// RandomOptions configures WriteRandom.
type RandomOptions struct {
	// Seed selects the weights; the same seed and config give the same
	// bytes.
	Seed uint64
	// DType is the storage type: BF16 (the default), F16 or F32.
	DType safetensors.DType
	// Std is the standard deviation of the normal initialisation of
	// embeddings and projections; 0 means the config's initializer_range,
	// or 0.02.
	Std float64
	// BiasStd, when positive, draws biases from a normal distribution
	// instead of Hugging Face's zeros, so that tests see their effect.
	BiasStd float64
	// TokenizerDir, when set, is a folder whose tokenizer files
	// (TokenizerFiles) are copied next to the weights.
	TokenizerDir string
	// MaxShardBytes splits the weights into shards with an index when they
	// exceed it (0: one file).
	MaxShardBytes int64
}

// chunkElems is the unit of parallel generation: each chunk of a tensor
// has its own random stream, so the result does not depend on how many
// goroutines generate it.
const chunkElems = 1 << 20

// WriteRandom writes a checkpoint with random weights for cfg into dir
// (created if needed): config.json, safetensors weights and, when
// opts.TokenizerDir is set, the tokenizer files. Initialisation follows
// transformers' Qwen2PreTrainedModel._init_weights: embeddings and
// projection weights normal(0, initializer_range), biases zero, RMSNorm
// scales one. Weights are generated and written tensor by tensor, in
// parallel chunks, so even the 3B shape needs little memory.
func WriteRandom(dir string, cfg *Config, opts RandomOptions) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	dt := opts.DType
	if dt == "" {
		dt = safetensors.BF16
	}
	if dt != safetensors.BF16 && dt != safetensors.F16 && dt != safetensors.F32 {
		return fmt.Errorf("random weights can be BF16, F16 or F32, not %s", dt)
	}
	std := opts.Std
	if std == 0 {
		std = cfg.InitializerRange
	}
	if std == 0 {
		std = 0.02
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var entries []safetensors.Entry
	for _, w := range Weights(cfg) {
		var s float64
		constant := 0.0
		switch w.Kind {
		case KindEmbedding, KindLinear:
			s = std
		case KindBias:
			s = opts.BiasStd
		case KindNorm:
			constant = 1
		}
		entries = append(entries, safetensors.Entry{
			Name:  w.Name,
			DType: dt,
			Shape: w.Shape,
			Fill:  randomFill(opts.Seed, w.Name, w.Shape, dt, s, constant),
		})
	}
	if _, err := safetensors.WriteDir(dir, entries, map[string]string{"format": "pt"}, opts.MaxShardBytes); err != nil {
		return err
	}
	c := *cfg
	c.TorchDtype = map[safetensors.DType]string{safetensors.BF16: "bfloat16", safetensors.F16: "float16", safetensors.F32: "float32"}[dt]
	if err := WriteConfig(filepath.Join(dir, ConfigFile), &c); err != nil {
		return err
	}
	if opts.TokenizerDir != "" {
		if _, err := CopyTokenizer(opts.TokenizerDir, dir); err != nil {
			return err
		}
	}
	return nil
}

// randomFill returns a safetensors Fill function producing normal(0, std)
// values (or the constant when std is 0) for one tensor.
func randomFill(seed uint64, name string, shape []int, dt safetensors.DType, std, constant float64) func(io.Writer) error {
	h := fnv.New64a()
	h.Write([]byte(name))
	stream := h.Sum64()
	n := 1
	for _, d := range shape {
		n *= d
	}
	esz := dt.Size()
	return func(w io.Writer) error {
		workers := runtime.GOMAXPROCS(0)
		bufs := make([][]byte, workers)
		for start := 0; start < n; start += workers * chunkElems {
			var wg sync.WaitGroup
			for k := range workers {
				lo := start + k*chunkElems
				if lo >= n {
					bufs[k] = bufs[k][:0]
					continue
				}
				hi := min(lo+chunkElems, n)
				if cap(bufs[k]) < (hi-lo)*esz {
					bufs[k] = make([]byte, chunkElems*esz)
				}
				bufs[k] = bufs[k][:(hi-lo)*esz]
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(seed, stream^uint64(lo/chunkElems)*0x9e3779b97f4a7c15))
					b := bufs[k]
					for i := range hi - lo {
						v := constant
						if std != 0 {
							v = rng.NormFloat64() * std
						}
						switch dt {
						case safetensors.F32:
							binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(v)))
						case safetensors.BF16:
							binary.LittleEndian.PutUint16(b[2*i:], uint16(bfloat16.FromFloat32(float32(v))))
						case safetensors.F16:
							binary.LittleEndian.PutUint16(b[2*i:], uint16(float16.FromFloat32(float32(v))))
						}
					}
				})
			}
			wg.Wait()
			for _, b := range bufs {
				if _, err := w.Write(b); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// CopyTokenizer copies the files of TokenizerFiles that exist in src into
// dst and returns their names. A src without tokenizer.json is an error.
func CopyTokenizer(src, dst string) ([]string, error) {
	if _, err := os.Stat(filepath.Join(src, "tokenizer.json")); err != nil {
		return nil, fmt.Errorf("tokenizer folder %s: no tokenizer.json", src)
	}
	var copied []string
	for _, name := range TokenizerFiles {
		data, err := os.ReadFile(filepath.Join(src, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return copied, err
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			return copied, err
		}
		copied = append(copied, name)
	}
	return copied, nil
}
