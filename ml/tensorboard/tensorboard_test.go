package tensorboard

import (
	"bytes"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCRC32CCheckValue(t *testing.T) {
	// The CRC-32C check value from RFC 3720 (iSCSI), appendix B.4.
	if got, want := crc32.Checksum([]byte("123456789"), castagnoli), uint32(0xe3069283); got != want {
		t.Fatalf("crc32c = %08x, want %08x", got, want)
	}
	// The masking of TensorFlow's lib/hash/crc32c.h: rotate right by 15
	// and add 0xa282ead8.
	c := crc32.Checksum([]byte("abc"), castagnoli)
	if got, want := maskedCRC([]byte("abc")), ((c>>15)|(c<<17))+0xa282ead8; got != want {
		t.Fatalf("maskedCRC = %08x, want %08x", got, want)
	}
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(filepath.Join(dir, "tb"))
	if err != nil {
		t.Fatal(err)
	}
	if !IsEventFile(w.Path()) {
		t.Errorf("file name %q is not an event file name", w.Path())
	}
	at := time.Unix(1700000000, 500_000_000)
	want := []Event{
		{WallTime: 1700000000.5, Step: 1, Scalars: []Scalar{{Tag: "train/loss", Value: 2.5}}},
		{WallTime: 1700000000.5, Step: 300, Scalars: []Scalar{{Tag: "train/lr", Value: 2e-5}}},
		{WallTime: 1700000000.5, Step: 1 << 40, Scalars: []Scalar{{Tag: "eval/loss", Value: -1.25}}},
	}
	for _, ev := range want {
		if err := w.ScalarAt(ev.Scalars[0].Tag, ev.Step, float64(ev.Scalars[0].Value), at); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want)+1 {
		t.Fatalf("read %d events, want %d", len(got), len(want)+1)
	}
	if got[0].FileVersion != FileVersion || len(got[0].Scalars) != 0 {
		t.Errorf("first event = %+v, want file_version %q", got[0], FileVersion)
	}
	for i, ev := range want {
		g := got[i+1]
		if g.Step != ev.Step || g.WallTime != ev.WallTime || len(g.Scalars) != 1 || g.Scalars[0] != ev.Scalars[0] {
			t.Errorf("event %d = %+v, want %+v", i+1, g, ev)
		}
	}
}

func TestReadDetectsCorruption(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.Scalar("loss", 1, 1)
	w.Close()
	b, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-6] ^= 0x40 // inside the last record's payload
	if _, err := Read(bytes.NewReader(b), "x"); err == nil {
		t.Fatal("corrupted payload read without error")
	}
}

func TestCreateTwiceInOneSecond(t *testing.T) {
	dir := t.TempDir()
	a, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	if a.Path() == b.Path() {
		t.Fatalf("two writers share %s", a.Path())
	}
}
