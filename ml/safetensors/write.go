package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Entry is one tensor to write. Either Data holds its raw little-endian
// bytes, or Fill streams them (exactly Size bytes) so that large tensors can
// be produced without holding them all in memory.
type Entry struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
	Fill  func(w io.Writer) error
}

// Size returns the number of bytes of the entry's data.
func (e *Entry) Size() int64 { return int64(numElements(e.Shape)) * int64(e.DType.Size()) }

// dtypeRank is the order of the reference implementation's Dtype enum; it
// writes tensors sorted by descending rank, then by name.
var dtypeRank = map[DType]int{
	BOOL: 0, U8: 1, I8: 2, F8E5M2: 3, F8E4M3: 4, I16: 5, U16: 6, F16: 7, BF16: 8,
	I32: 9, U32: 10, F32: 11, F64: 12, I64: 13, U64: 14,
}

func sortEntries(entries []Entry) []Entry {
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b Entry) int {
		if ra, rb := dtypeRank[a.DType], dtypeRank[b.DType]; ra != rb {
			return rb - ra
		}
		return strings.Compare(a.Name, b.Name)
	})
	return sorted
}

// header builds the JSON header: __metadata__ first, then the tensors in
// data order, padded with spaces to a multiple of 8 bytes so that every
// tensor starts aligned.
func header(entries []Entry, metadata map[string]string) ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	first := true
	if len(metadata) > 0 {
		m, err := json.Marshal(metadata) // Marshal sorts the keys.
		if err != nil {
			return nil, err
		}
		b.WriteString(`"__metadata__":`)
		b.Write(m)
		first = false
	}
	seen := map[string]bool{}
	var off int64
	for _, e := range entries {
		if !e.DType.Valid() {
			return nil, fmt.Errorf("tensor %q: unknown dtype %q", e.Name, e.DType)
		}
		if e.Name == "" || e.Name == "__metadata__" || seen[e.Name] {
			return nil, fmt.Errorf("tensor name %q is empty, reserved or duplicated", e.Name)
		}
		seen[e.Name] = true
		if e.Fill == nil && int64(len(e.Data)) != e.Size() {
			return nil, fmt.Errorf("tensor %q: %s%v needs %d bytes, Data has %d", e.Name, e.DType, e.Shape, e.Size(), len(e.Data))
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		name, _ := json.Marshal(e.Name)
		b.Write(name)
		b.WriteString(`:{"dtype":"`)
		b.WriteString(string(e.DType))
		b.WriteString(`","shape":[`)
		for i, d := range e.Shape {
			if d < 0 {
				return nil, fmt.Errorf("tensor %q: negative dimension in shape %v", e.Name, e.Shape)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		b.WriteString(`],"data_offsets":[`)
		b.WriteString(strconv.FormatInt(off, 10))
		b.WriteByte(',')
		off += e.Size()
		b.WriteString(strconv.FormatInt(off, 10))
		b.WriteString("]}")
	}
	b.WriteByte('}')
	for (b.Len()+8)%8 != 0 {
		b.WriteByte(' ')
	}
	return []byte(b.String()), nil
}

// WriteTo writes entries as a safetensors stream: tensors sorted as the
// reference implementation sorts them (dtype, then name), so the same
// entries in any order give the same bytes.
func WriteTo(w io.Writer, entries []Entry, metadata map[string]string) error {
	entries = sortEntries(entries)
	h, err := header(entries, metadata)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(h); err != nil {
		return err
	}
	for _, e := range entries {
		if e.Fill == nil {
			if _, err := w.Write(e.Data); err != nil {
				return err
			}
			continue
		}
		cw := &countingWriter{w: w}
		if err := e.Fill(cw); err != nil {
			return fmt.Errorf("tensor %q: %w", e.Name, err)
		}
		if cw.n != e.Size() {
			return fmt.Errorf("tensor %q: Fill wrote %d bytes, want %d", e.Name, cw.n, e.Size())
		}
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Write writes entries to path atomically (through a temporary file in the
// same folder, renamed into place). Metadata is typically
// {"format": "pt"}.
func Write(path string, entries []Entry, metadata map[string]string) error {
	return writeAtomic(path, func(w io.Writer) error { return WriteTo(w, entries, metadata) })
}

func writeAtomic(path string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = write(bw); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// WriteDir writes entries as a checkpoint's weights in dir: one
// model.safetensors when they fit in maxShardBytes (or maxShardBytes <= 0),
// else model-0000N-of-0000M.safetensors shards filled greedily in the
// entries' order plus model.safetensors.index.json, as transformers'
// save_pretrained does. It returns the names of the files written.
func WriteDir(dir string, entries []Entry, metadata map[string]string, maxShardBytes int64) ([]string, error) {
	var shards [][]Entry
	var cur []Entry
	var curSize, total int64
	for _, e := range entries {
		total += e.Size()
		if maxShardBytes > 0 && len(cur) > 0 && curSize+e.Size() > maxShardBytes {
			shards = append(shards, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, e)
		curSize += e.Size()
	}
	shards = append(shards, cur)
	if len(shards) == 1 {
		os.Remove(filepath.Join(dir, IndexFile))
		return []string{SingleFile}, Write(filepath.Join(dir, SingleFile), entries, metadata)
	}
	idx := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": total}, map[string]string{}}
	var names []string
	for i, shard := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		names = append(names, name)
		if err := Write(filepath.Join(dir, name), shard, metadata); err != nil {
			return nil, err
		}
		for _, e := range shard {
			idx.WeightMap[e.Name] = name
		}
	}
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(dir, SingleFile))
	err = writeAtomic(filepath.Join(dir, IndexFile), func(w io.Writer) error {
		_, err := w.Write(append(data, '\n'))
		return err
	})
	return append(names, IndexFile), err
}
