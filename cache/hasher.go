package cache

import (
	"encoding/binary"
	"encoding/hex"
	"hash"

	"github.com/zeebo/blake3"
)

// FormatVersion is hashed first into every key. Bump it whenever the
// meaning of a key or the layout of an entry changes.
const FormatVersion = "pipe-cache-1"

// Hasher builds an action key from delimited, typed fields, so that no two
// different sequences of fields hash the same bytes (as "ab"+"c" and
// "a"+"bc" would if they were simply concatenated).
type Hasher struct {
	h hash.Hash
}

// NewHasher returns a Hasher that has already absorbed FormatVersion.
func NewHasher() *Hasher {
	h := &Hasher{h: blake3.New()}
	h.String("format", FormatVersion)
	return h
}

// String adds the field name with a string value.
func (h *Hasher) String(name, value string) {
	h.field('s', name, []byte(value))
}

// Bytes adds the field name with a byte value.
func (h *Hasher) Bytes(name string, value []byte) {
	h.field('b', name, value)
}

// Int adds the field name with an integer value.
func (h *Hasher) Int(name string, value int64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(value))
	h.field('i', name, b[:])
}

func (h *Hasher) field(typ byte, name string, value []byte) {
	var n [8]byte
	h.h.Write([]byte{typ})
	binary.BigEndian.PutUint64(n[:], uint64(len(name)))
	h.h.Write(n[:])
	h.h.Write([]byte(name))
	binary.BigEndian.PutUint64(n[:], uint64(len(value)))
	h.h.Write(n[:])
	h.h.Write(value)
}

// Sum returns the key as 64 hex digits.
func (h *Hasher) Sum() string {
	return hex.EncodeToString(h.h.Sum(nil))
}
