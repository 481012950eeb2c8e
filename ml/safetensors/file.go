package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
)

// MaxHeaderSize bounds the JSON header, as the reference implementation
// does, so that a corrupt length cannot make Open allocate gigabytes.
const MaxHeaderSize = 100 << 20

// Tensor is one tensor of an open file. Its Data aliases the file's memory
// mapping: it is valid until the File (or Set) it came from is closed and
// must not be written to.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	// Data holds the raw little-endian bytes of the tensor, zero-copy.
	Data []byte
	// File is the path of the file the tensor lives in, for error messages.
	File string
}

// NumElements returns the product of the tensor's dimensions (1 for a
// scalar).
func (t *Tensor) NumElements() int { return numElements(t.Shape) }

func numElements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// File is an open, memory-mapped safetensors file. It is safe for
// concurrent reads; Close must not race with them.
type File struct {
	path     string
	mapped   []byte
	unmap    func() error
	metadata map[string]string
	tensors  map[string]*Tensor
	names    []string
}

// Open memory-maps the safetensors file at path and validates its header:
// known dtypes, non-negative shapes, offsets that match each tensor's size
// and cover the data section exactly, without overlap or holes.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	data, unmap, err := mmapFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sf, err := parse(path, data)
	if err != nil {
		unmap()
		return nil, err
	}
	sf.unmap = unmap
	return sf, nil
}

// Parse reads a safetensors file held in memory; the returned File's
// tensors alias data. Closing it is a no-op.
func Parse(name string, data []byte) (*File, error) {
	sf, err := parse(name, data)
	if err != nil {
		return nil, err
	}
	sf.unmap = func() error { return nil }
	return sf, nil
}

type headerEntry struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

func parse(path string, data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("%s: not a safetensors file: %d bytes, too short for the 8-byte header length", path, len(data))
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("%s: not a safetensors file: header length %d exceeds %d bytes", path, n, MaxHeaderSize)
	}
	if n > uint64(len(data)-8) {
		return nil, fmt.Errorf("%s: truncated safetensors file: header length %d but only %d bytes follow", path, n, len(data)-8)
	}
	header := data[8 : 8+n]
	if len(header) == 0 || header[0] != '{' {
		return nil, fmt.Errorf("%s: not a safetensors file: header does not start with '{'", path)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, fmt.Errorf("%s: invalid safetensors header: %v", path, err)
	}
	body := data[8+n:]
	sf := &File{path: path, mapped: data, tensors: make(map[string]*Tensor, len(raw))}
	type span struct {
		name       string
		start, end int64
	}
	spans := make([]span, 0, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &sf.metadata); err != nil {
				return nil, fmt.Errorf("%s: invalid __metadata__ (must map strings to strings): %v", path, err)
			}
			continue
		}
		var e headerEntry
		dec := json.NewDecoder(bytes.NewReader(msg))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: invalid header entry: %v", path, name, err)
		}
		dt, err := parseDType(e.DType)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %v", path, name, err)
		}
		if len(e.DataOffsets) != 2 {
			return nil, fmt.Errorf("%s: tensor %q: data_offsets must have 2 elements, got %d", path, name, len(e.DataOffsets))
		}
		shape := make([]int, len(e.Shape))
		elems := int64(1)
		for i, d := range e.Shape {
			if d < 0 {
				return nil, fmt.Errorf("%s: tensor %q: negative dimension %d in shape %v", path, name, d, e.Shape)
			}
			if d > 0 && elems > math.MaxInt64/d/8 {
				return nil, fmt.Errorf("%s: tensor %q: shape %v overflows", path, name, e.Shape)
			}
			elems *= d
			shape[i] = int(d)
		}
		start, end := e.DataOffsets[0], e.DataOffsets[1]
		if start < 0 || end < start || end > int64(len(body)) {
			return nil, fmt.Errorf("%s: tensor %q: data_offsets [%d, %d] outside the %d-byte data section", path, name, start, end, len(body))
		}
		if want := elems * int64(dt.Size()); end-start != want {
			return nil, fmt.Errorf("%s: tensor %q: %s%v needs %d bytes but data_offsets [%d, %d] span %d", path, name, dt, e.Shape, want, start, end, end-start)
		}
		sf.tensors[name] = &Tensor{Name: name, DType: dt, Shape: shape, Data: body[start:end:end], File: path}
		spans = append(spans, span{name, start, end})
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].start != spans[j].start {
			return spans[i].start < spans[j].start
		}
		return spans[i].end < spans[j].end
	})
	pos := int64(0)
	for _, s := range spans {
		if s.start != pos {
			if s.start < pos {
				return nil, fmt.Errorf("%s: tensor %q overlaps the previous tensor (starts at %d, previous ends at %d)", path, s.name, s.start, pos)
			}
			return nil, fmt.Errorf("%s: hole in data section before tensor %q (bytes %d to %d are unused)", path, s.name, pos, s.start)
		}
		pos = s.end
	}
	if pos != int64(len(body)) {
		return nil, fmt.Errorf("%s: data section has %d bytes but tensors cover only %d", path, len(body), pos)
	}
	sf.names = make([]string, 0, len(sf.tensors))
	for name := range sf.tensors {
		sf.names = append(sf.names, name)
	}
	slices.Sort(sf.names)
	return sf, nil
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Names returns the tensor names in sorted order.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Metadata returns the header's __metadata__ map (nil when absent).
func (f *File) Metadata() map[string]string { return f.metadata }

// Tensor returns the named tensor, or nil and false.
func (f *File) Tensor(name string) (*Tensor, bool) {
	t, ok := f.tensors[name]
	return t, ok
}

// Close unmaps the file. Tensors obtained from it must not be used after.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap = nil
	f.tensors = nil
	return err
}
