package safetensors

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
)

func testEntries() []Entry {
	f32 := []float32{1, -2.5, 3.25, 0, float32(math.Pi), -1e-3}
	bf := bfloat16.FromFloat32s(0.5, -1, 2, 1e-2)
	f16 := make([]byte, 6)
	for i, v := range []float32{1.5, -0.25, 100} {
		binary.LittleEndian.PutUint16(f16[2*i:], uint16(float16.FromFloat32(v)))
	}
	return []Entry{
		{Name: "z.weight", DType: F32, Shape: []int{2, 3}, Data: Float32Bytes(f32)},
		{Name: "a.bias", DType: BF16, Shape: []int{4}, Data: BFloat16Bytes(bf)},
		{Name: "h", DType: F16, Shape: []int{3}, Data: f16},
		{Name: "ids", DType: I64, Shape: []int{2}, Data: binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 7), uint64(math.MaxUint64))},
		{Name: "scalar", DType: I8, Shape: []int{}, Data: []byte{0xfe}},
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.safetensors")
	if err := Write(path, testEntries(), map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, want := f.Names(), []string{"a.bias", "h", "ids", "scalar", "z.weight"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if got := f.Metadata()["format"]; got != "pt" {
		t.Errorf("metadata format = %q, want pt", got)
	}
	z, _ := f.Tensor("z.weight")
	got, err := z.Float32()
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{1, -2.5, 3.25, 0, float32(math.Pi), -1e-3}; !slices.Equal(got, want) || !slices.Equal(z.Shape, []int{2, 3}) {
		t.Errorf("z.weight = %v %v", z.Shape, got)
	}
	a, _ := f.Tensor("a.bias")
	af, _ := a.Float32()
	if want := []float32{0.5, -1, 2, bfloat16.FromFloat32(1e-2).Float32()}; !slices.Equal(af, want) {
		t.Errorf("a.bias = %v, want %v", af, want)
	}
	ab, err := a.BFloat16()
	if err != nil || ab[1].Float32() != -1 {
		t.Errorf("a.bias BFloat16() = %v, %v", ab, err)
	}
	zb, _ := z.BFloat16()
	if zb[4] != bfloat16.FromFloat32(float32(math.Pi)) {
		t.Errorf("f32->bf16 conversion = %v", zb[4])
	}
	h, _ := f.Tensor("h")
	hf, _ := h.Float32()
	if want := []float32{1.5, -0.25, 100}; !slices.Equal(hf, want) {
		t.Errorf("h = %v, want %v", hf, want)
	}
	ids, _ := f.Tensor("ids")
	iv, _ := ids.Int64s()
	if !slices.Equal(iv, []int64{7, -1}) {
		t.Errorf("ids = %v", iv)
	}
	s, _ := f.Tensor("scalar")
	sv, _ := s.Int64s()
	if s.NumElements() != 1 || sv[0] != -2 {
		t.Errorf("scalar = %v", sv)
	}
	if _, err := ids.Float32(); err == nil {
		t.Error("I64 to float32 conversion should fail")
	}
}

func TestDeterministicAndAligned(t *testing.T) {
	var a, b bytes.Buffer
	e := testEntries()
	if err := WriteTo(&a, e, map[string]string{"format": "pt", "b": "x"}); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(e)
	if err := WriteTo(&b, e, map[string]string{"b": "x", "format": "pt"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("entry order changed the bytes")
	}
	n := binary.LittleEndian.Uint64(a.Bytes())
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	hdr := string(a.Bytes()[8 : 8+n])
	if !strings.HasPrefix(hdr, `{"__metadata__":{"b":"x","format":"pt"},"ids":`) {
		t.Errorf("header = %s", hdr)
	}
}

func TestInvalid(t *testing.T) {
	mk := func(h string, body int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
		return append(append(b, h...), make([]byte, body)...)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"short", []byte{1, 2}, "too short"},
		{"huge header", binary.LittleEndian.AppendUint64(nil, 1<<40), "exceeds"},
		{"truncated", append(binary.LittleEndian.AppendUint64(nil, 100), '{'), "truncated"},
		{"not json", mk("{nope", 0), "invalid safetensors header"},
		{"dtype", mk(`{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}`, 1), `tensor "a": unknown dtype "Q7"`},
		{"size", mk(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), "needs 8 bytes"},
		{"outside", mk(`{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}`, 4), "outside"},
		{"overlap", mk(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, 4), "overlaps"},
		{"hole", mk(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}`, 4), "hole"},
		{"tail", mk(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, 4), "cover only 2"},
		{"negative", mk(`{"a":{"dtype":"U8","shape":[-2],"data_offsets":[0,0]}}`, 0), "negative dimension"},
		{"unknown field", mk(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}}`, 1), "unknown field"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".safetensors")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q should name the file and contain %q", err, tt.want)
			}
		})
	}
}

func TestShardedDir(t *testing.T) {
	dir := t.TempDir()
	var entries []Entry
	for _, name := range []string{"l0", "l1", "l2", "l3"} {
		entries = append(entries, Entry{Name: name, DType: F32, Shape: []int{4}, Data: Float32Bytes([]float32{1, 2, 3, 4})})
	}
	entries[2].Data = nil
	entries[2].Fill = func(w io.Writer) error {
		_, err := w.Write(Float32Bytes([]float32{9, 9, 9, 9}))
		return err
	}
	files, err := WriteDir(dir, entries, map[string]string{"format": "pt"}, 40)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", IndexFile}
	if !slices.Equal(files, want) {
		t.Fatalf("files = %v, want %v", files, want)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Names(); !slices.Equal(got, []string{"l0", "l1", "l2", "l3"}) {
		t.Errorf("Names() = %v", got)
	}
	l2, ok := s.Tensor("l2")
	if !ok || filepath.Base(l2.File) != "model-00002-of-00002.safetensors" {
		t.Fatalf("l2 in %v", l2)
	}
	if v, _ := l2.Float32(); v[0] != 9 {
		t.Errorf("l2 = %v", v)
	}
	// An index naming a tensor that its shard lacks is an error.
	os.WriteFile(filepath.Join(dir, IndexFile), []byte(`{"weight_map":{"l0":"model-00002-of-00002.safetensors"}}`), 0o644)
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), `"l0"`) {
		t.Errorf("OpenDir with a wrong index: %v", err)
	}
	// One shard: a single model.safetensors and no index.
	dir2 := t.TempDir()
	if files, err := WriteDir(dir2, entries, nil, 0); err != nil || !slices.Equal(files, []string{SingleFile}) {
		t.Fatalf("WriteDir = %v, %v", files, err)
	}
	s2, err := OpenDir(dir2)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if _, err := OpenDir(t.TempDir()); err == nil {
		t.Error("OpenDir of an empty folder should fail")
	}
}
