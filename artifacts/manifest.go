package artifacts

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// manifestHeader is the first line of every manifest. A change of the
// format changes the header, so old and new manifests never share a digest.
const manifestHeader = "pipe-manifest v1"

// ManifestEntry is one file of a folder artifact.
type ManifestEntry struct {
	// Path is slash-separated, relative to the folder, clean, and never
	// leaves the folder.
	Path   string `json:"path"`
	Digest Digest `json:"digest"`
	Size   int64  `json:"size"`
	// Exec records the owner-executable bit, the only mode bit kept.
	Exec bool `json:"exec,omitempty"`
}

// Manifest describes a folder artifact as the sorted list of its files.
// Empty folders and the folder's own name are not part of it, so two
// folders with the same files have the same manifest digest wherever they
// are.
type Manifest struct {
	Entries []ManifestEntry
}

// Sort orders the entries by path, the order Marshal requires.
func (m *Manifest) Sort() {
	slices.SortFunc(m.Entries, func(a, b ManifestEntry) int { return strings.Compare(a.Path, b.Path) })
}

// Size is the total size of the files.
func (m *Manifest) Size() int64 {
	var n int64
	for _, e := range m.Entries {
		n += e.Size
	}
	return n
}

// Marshal returns the canonical text form: a header line, then one line per
// file, sorted by path: "<digest> <size> <x|-> <quoted path>". It fails on
// entries that ParseManifest would reject.
func (m *Manifest) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(m.Entries) * 120)
	b.WriteString(manifestHeader)
	b.WriteByte('\n')
	prev := ""
	for i, e := range m.Entries {
		if err := checkManifestPath(e.Path); err != nil {
			return nil, err
		}
		if i > 0 && e.Path <= prev {
			return nil, fmt.Errorf("manifest entries not sorted or duplicated at %q", e.Path)
		}
		if !e.Digest.Valid() {
			return nil, fmt.Errorf("manifest entry %q: invalid digest", e.Path)
		}
		if e.Size < 0 {
			return nil, fmt.Errorf("manifest entry %q: negative size", e.Path)
		}
		prev = e.Path
		mode := byte('-')
		if e.Exec {
			mode = 'x'
		}
		b.WriteString(string(e.Digest))
		b.WriteByte(' ')
		b.Write(strconv.AppendInt(nil, e.Size, 10))
		b.WriteByte(' ')
		b.WriteByte(mode)
		b.WriteByte(' ')
		writeQuoted(&b, e.Path)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// writeQuoted writes strconv.Quote(s), taking a short cut for the common
// plain-ASCII path.
func writeQuoted(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b.WriteString(strconv.Quote(s))
			return
		}
	}
	b.WriteByte('"')
	b.WriteString(s)
	b.WriteByte('"')
}

// Digest returns the digest of the canonical form, the identity of the
// folder artifact.
func (m *Manifest) Digest() (Digest, error) {
	b, err := m.Marshal()
	if err != nil {
		return "", err
	}
	return DigestBytes(b), nil
}

// ParseManifest reads the canonical form written by Marshal. It rejects
// anything else: unknown headers, malformed lines, unsorted or duplicate
// paths, and paths that are absolute, unclean or leave the folder.
func ParseManifest(r io.Reader) (*Manifest, error) {
	br := bufio.NewReader(r)
	line, err := readManifestLine(br)
	if err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("manifest: empty")
		}
		return nil, err
	}
	if line != manifestHeader {
		return nil, fmt.Errorf("manifest: unknown header %q", line)
	}
	m := &Manifest{}
	for n := 2; ; n++ {
		line, err := readManifestLine(br)
		if err == io.EOF {
			return m, nil
		}
		if err != nil {
			return nil, err
		}
		e, err := parseManifestLine(line)
		if err != nil {
			return nil, fmt.Errorf("manifest line %d: %v", n, err)
		}
		if k := len(m.Entries); k > 0 && e.Path <= m.Entries[k-1].Path {
			return nil, fmt.Errorf("manifest line %d: path %q not sorted or duplicated", n, e.Path)
		}
		m.Entries = append(m.Entries, e)
	}
}

func readManifestLine(br *bufio.Reader) (string, error) {
	s, err := br.ReadString('\n')
	if err == io.EOF {
		if s != "" {
			return "", fmt.Errorf("manifest: last line not terminated")
		}
		return "", io.EOF
	}
	if err != nil {
		return "", err
	}
	return s[:len(s)-1], nil
}

func parseManifestLine(line string) (ManifestEntry, error) {
	var e ManifestEntry
	parts := strings.SplitN(line, " ", 4)
	if len(parts) != 4 {
		return e, fmt.Errorf("want 4 fields")
	}
	e.Digest = Digest(parts[0])
	if !e.Digest.Valid() || strings.ToLower(parts[0]) != parts[0] {
		return e, fmt.Errorf("invalid digest %q", parts[0])
	}
	size, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != parts[1] {
		return e, fmt.Errorf("invalid size %q", parts[1])
	}
	e.Size = size
	switch parts[2] {
	case "x":
		e.Exec = true
	case "-":
	default:
		return e, fmt.Errorf("invalid mode %q", parts[2])
	}
	p, err := strconv.Unquote(parts[3])
	if err != nil || strconv.Quote(p) != parts[3] {
		return e, fmt.Errorf("invalid path %s", parts[3])
	}
	if err := checkManifestPath(p); err != nil {
		return e, err
	}
	e.Path = p
	return e, nil
}

func checkManifestPath(p string) error {
	// fs.ValidPath rejects empty, "." and ".." elements and leading or
	// trailing slashes, so a valid path is also clean.
	if p == "" || p == "." || !fs.ValidPath(p) || strings.IndexByte(p, '\\') >= 0 {
		return fmt.Errorf("invalid manifest path %q", p)
	}
	return nil
}
