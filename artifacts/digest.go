package artifacts

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/zeebo/blake3"
)

// Digest is the BLAKE3-256 hash of some bytes, as 64 lowercase hex digits.
type Digest string

// DigestBytes returns the digest of b.
func DigestBytes(b []byte) Digest {
	sum := blake3.Sum256(b)
	return Digest(hex.EncodeToString(sum[:]))
}

// DigestReader returns the digest of everything read from r and its length.
func DigestReader(r io.Reader) (Digest, int64, error) {
	h := blake3.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return Digest(hex.EncodeToString(h.Sum(nil))), n, nil
}

// DigestFile returns the digest and size of the file at path.
func DigestFile(path string) (Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	return DigestReader(f)
}

// Valid reports whether d looks like a digest.
func (d Digest) Valid() bool {
	if len(d) != 64 {
		return false
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// Short is the first 12 hex digits, for display.
func (d Digest) Short() string {
	if len(d) < 12 {
		return string(d)
	}
	return string(d[:12])
}

// Artifact describes one stored output: a file, or a folder recorded as a
// manifest (then Digest is the manifest's digest).
type Artifact struct {
	Name   string `json:"name"`
	Digest Digest `json:"digest"`
	Size   int64  `json:"size"`
	Dir    bool   `json:"dir,omitempty"`
	Path   string `json:"path,omitempty"`
}

func (a Artifact) String() string {
	return fmt.Sprintf("%s %s (%d bytes)", a.Name, a.Digest.Short(), a.Size)
}
