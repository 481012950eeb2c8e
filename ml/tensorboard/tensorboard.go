package tensorboard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is TFRecord's masked CRC-32C of b.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return ((c >> 15) | (c << 17)) + 0xa282ead8
}

// FileVersion is the file_version string of the first event of every file.
const FileVersion = "brain.Event:2"

// Writer appends scalar events to one event file. Its methods are safe
// for concurrent use.
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	path string
	err  error
}

// FileName returns the conventional event file name for a file created at
// t on host: events.out.tfevents.<unix seconds>.<host>.
func FileName(t time.Time, host string) string {
	return fmt.Sprintf("events.out.tfevents.%d.%s", t.Unix(), host)
}

// Create makes dir if needed and creates a new event file in it, named by
// FileName with the current time and host name. If a file of that name
// exists (two writers in the same second), a numeric suffix is added to
// the host part so that no events are overwritten.
func Create(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	now := time.Now()
	name := FileName(now, host)
	for i := 1; ; i++ {
		path := filepath.Join(dir, name)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			name = FileName(now, fmt.Sprintf("%s.%d", host, i))
			continue
		}
		if err != nil {
			return nil, err
		}
		w := &Writer{f: f, w: bufio.NewWriter(f), path: path}
		w.writeRecord(encodeEvent(&Event{WallTime: nowSeconds(), FileVersion: FileVersion}))
		if err := w.Flush(); err != nil {
			f.Close()
			return nil, err
		}
		return w, nil
	}
}

// Path is the event file's path.
func (w *Writer) Path() string { return w.path }

func nowSeconds() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// Scalar appends one scalar summary for tag at step, stamped now.
func (w *Writer) Scalar(tag string, step int64, value float64) error {
	return w.ScalarAt(tag, step, value, time.Now())
}

// ScalarAt appends one scalar summary for tag at step with wall time t.
func (w *Writer) ScalarAt(tag string, step int64, value float64, t time.Time) error {
	ev := &Event{
		WallTime: float64(t.UnixNano()) / 1e9,
		Step:     step,
		Scalars:  []Scalar{{Tag: tag, Value: float32(value)}},
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeRecord(encodeEvent(ev))
	return w.err
}

// Flush writes buffered events to the file.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = w.w.Flush()
	}
	return w.err
}

// Close flushes, syncs and closes the file.
func (w *Writer) Close() error {
	err := w.Flush()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return err
	}
	if serr := w.f.Sync(); err == nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	return err
}

// writeRecord frames data as one TFRecord. The caller holds w.mu (or is
// the constructor).
func (w *Writer) writeRecord(data []byte) {
	if w.err != nil {
		return
	}
	var hdr [12]byte
	binary.LittleEndian.PutUint64(hdr[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(hdr[8:], maskedCRC(hdr[:8]))
	var foot [4]byte
	binary.LittleEndian.PutUint32(foot[:], maskedCRC(data))
	for _, b := range [][]byte{hdr[:], data, foot[:]} {
		if _, err := w.w.Write(b); err != nil {
			w.err = err
			return
		}
	}
}

// Event is the subset of tf.Event this package writes and reads.
type Event struct {
	WallTime    float64
	Step        int64
	FileVersion string
	Scalars     []Scalar
}

// Scalar is one simple_value summary value.
type Scalar struct {
	Tag   string
	Value float32
}

// Protocol buffer wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

func appendTag(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field<<3|wire))
}

func appendBytesField(b []byte, field int, v []byte) []byte {
	b = appendTag(b, field, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// encodeEvent encodes ev as a tf.Event message: wall_time (1, double),
// step (2, int64), file_version (3, string) or summary (5, Summary), where
// Summary holds repeated value (1) = {tag (1), simple_value (2, float)}.
func encodeEvent(ev *Event) []byte {
	var b []byte
	b = appendTag(b, 1, wireFixed64)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(ev.WallTime))
	if ev.Step != 0 {
		b = appendTag(b, 2, wireVarint)
		b = binary.AppendUvarint(b, uint64(ev.Step))
	}
	if ev.FileVersion != "" {
		b = appendBytesField(b, 3, []byte(ev.FileVersion))
	}
	if len(ev.Scalars) > 0 {
		var sum []byte
		for _, s := range ev.Scalars {
			var v []byte
			v = appendBytesField(v, 1, []byte(s.Tag))
			v = appendTag(v, 2, wireFixed32)
			v = binary.LittleEndian.AppendUint32(v, math.Float32bits(s.Value))
			sum = appendBytesField(sum, 1, v)
		}
		b = appendBytesField(b, 5, sum)
	}
	return b
}

// ReadFile reads every event of the event file at path, checking both
// checksums of every record.
func ReadFile(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(bufio.NewReader(f), path)
}

// Read reads every event from r; name appears in errors.
func Read(r io.Reader, name string) ([]Event, error) {
	var events []Event
	for i := 0; ; i++ {
		var hdr [12]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return events, nil
			}
			return events, fmt.Errorf("%s: record %d: truncated header: %v", name, i, err)
		}
		if got, want := binary.LittleEndian.Uint32(hdr[8:]), maskedCRC(hdr[:8]); got != want {
			return events, fmt.Errorf("%s: record %d: length checksum %08x, want %08x", name, i, got, want)
		}
		n := binary.LittleEndian.Uint64(hdr[:8])
		if n > 1<<30 {
			return events, fmt.Errorf("%s: record %d: implausible length %d", name, i, n)
		}
		data := make([]byte, n+4)
		if _, err := io.ReadFull(r, data); err != nil {
			return events, fmt.Errorf("%s: record %d: truncated data: %v", name, i, err)
		}
		if got, want := binary.LittleEndian.Uint32(data[n:]), maskedCRC(data[:n]); got != want {
			return events, fmt.Errorf("%s: record %d: data checksum %08x, want %08x", name, i, got, want)
		}
		ev, err := decodeEvent(data[:n])
		if err != nil {
			return events, fmt.Errorf("%s: record %d: %v", name, i, err)
		}
		events = append(events, ev)
	}
}

// field is one decoded protocol buffer field.
type field struct {
	num, wire int
	u         uint64 // varint, fixed32 or fixed64 value
	b         []byte // bytes value
}

// fields decodes the top level fields of a message.
func fields(b []byte) ([]field, error) {
	var out []field
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errors.New("bad field tag")
		}
		b = b[n:]
		f := field{num: int(tag >> 3), wire: int(tag & 7)}
		switch f.wire {
		case wireVarint:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return nil, errors.New("bad varint")
			}
			f.u, b = v, b[n:]
		case wireFixed64:
			if len(b) < 8 {
				return nil, errors.New("truncated fixed64")
			}
			f.u, b = binary.LittleEndian.Uint64(b), b[8:]
		case wireFixed32:
			if len(b) < 4 {
				return nil, errors.New("truncated fixed32")
			}
			f.u, b = uint64(binary.LittleEndian.Uint32(b)), b[4:]
		case wireBytes:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return nil, errors.New("truncated length-delimited field")
			}
			f.b, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return nil, fmt.Errorf("unsupported wire type %d", f.wire)
		}
		out = append(out, f)
	}
	return out, nil
}

func decodeEvent(b []byte) (Event, error) {
	var ev Event
	fs, err := fields(b)
	if err != nil {
		return ev, err
	}
	for _, f := range fs {
		switch {
		case f.num == 1 && f.wire == wireFixed64:
			ev.WallTime = math.Float64frombits(f.u)
		case f.num == 2 && f.wire == wireVarint:
			ev.Step = int64(f.u)
		case f.num == 3 && f.wire == wireBytes:
			ev.FileVersion = string(f.b)
		case f.num == 5 && f.wire == wireBytes:
			vs, err := fields(f.b)
			if err != nil {
				return ev, fmt.Errorf("summary: %v", err)
			}
			for _, v := range vs {
				if v.num != 1 || v.wire != wireBytes {
					continue
				}
				parts, err := fields(v.b)
				if err != nil {
					return ev, fmt.Errorf("summary value: %v", err)
				}
				var s Scalar
				isScalar := false
				for _, p := range parts {
					switch {
					case p.num == 1 && p.wire == wireBytes:
						s.Tag = string(p.b)
					case p.num == 2 && p.wire == wireFixed32:
						s.Value = math.Float32frombits(uint32(p.u))
						isScalar = true
					}
				}
				if isScalar {
					ev.Scalars = append(ev.Scalars, s)
				}
			}
		}
	}
	return ev, nil
}

// IsEventFile reports whether name looks like an event file name.
func IsEventFile(name string) bool {
	return strings.HasPrefix(filepath.Base(name), "events.out.tfevents.")
}
