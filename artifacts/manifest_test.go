package artifacts

import (
	"bytes"
	"strings"
	"testing"
)

func testManifest() *Manifest {
	return &Manifest{Entries: []ManifestEntry{
		{Path: "a.txt", Digest: DigestBytes([]byte("a")), Size: 1},
		{Path: "dir/b c.bin", Digest: DigestBytes([]byte("b")), Size: 2, Exec: true},
		{Path: "dir/ünï\"code\n", Digest: DigestBytes([]byte("c")), Size: 3},
	}}
}

func TestManifestRoundTrip(t *testing.T) {
	m := testManifest()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, b)
	}
	b2, _ := got.Marshal()
	if !bytes.Equal(b, b2) {
		t.Errorf("round trip changed the manifest:\n%s\n%s", b, b2)
	}
	if got.Size() != 6 {
		t.Errorf("size = %d, want 6", got.Size())
	}
}

func TestManifestRejects(t *testing.T) {
	good, _ := testManifest().Marshal()
	lines := strings.Split(string(good), "\n")
	d := string(DigestBytes(nil))
	for name, src := range map[string]string{
		"empty":        "",
		"header":       "pipe-manifest v2\n",
		"unterminated": strings.TrimSuffix(string(good), "\n"),
		"unsorted":     lines[0] + "\n" + lines[2] + "\n" + lines[1] + "\n",
		"duplicate":    lines[0] + "\n" + lines[1] + "\n" + lines[1] + "\n",
		"dotdot":       manifestHeader + "\n" + d + ` 0 - "../x"` + "\n",
		"absolute":     manifestHeader + "\n" + d + ` 0 - "/x"` + "\n",
		"unclean":      manifestHeader + "\n" + d + ` 0 - "a//b"` + "\n",
		"unquoted":     manifestHeader + "\n" + d + " 0 - a\n",
		"badsize":      manifestHeader + "\n" + d + ` -1 - "a"` + "\n",
		"leadingzero":  manifestHeader + "\n" + d + ` 01 - "a"` + "\n",
		"baddigest":    manifestHeader + "\n" + strings.ToUpper(d) + ` 0 - "a"` + "\n",
		"badmode":      manifestHeader + "\n" + d + ` 0 r "a"` + "\n",
	} {
		if _, err := ParseManifest(strings.NewReader(src)); err == nil {
			t.Errorf("%s: parsed, want an error", name)
		}
	}
}

func TestManifestMarshalRejectsUnsorted(t *testing.T) {
	m := testManifest()
	m.Entries[0], m.Entries[1] = m.Entries[1], m.Entries[0]
	if _, err := m.Marshal(); err == nil {
		t.Error("unsorted manifest marshalled")
	}
	m.Sort()
	if _, err := m.Marshal(); err != nil {
		t.Error(err)
	}
}

// FuzzParseManifest: the reader never panics, and whatever it accepts is
// canonical: marshalling it gives back the same bytes.
func FuzzParseManifest(f *testing.F) {
	good, _ := testManifest().Marshal()
	f.Add(good)
	f.Add([]byte(manifestHeader + "\n"))
	f.Add([]byte(""))
	f.Add([]byte(manifestHeader + "\n" + string(DigestBytes(nil)) + ` 0 - "a"` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(bytes.NewReader(b))
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("accepted manifest does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("accepted non-canonical manifest:\n%q\n%q", b, out)
		}
	})
}
