//go:build unix

package safetensors

import (
	"os"
	"syscall"
)

// mmapFile maps the whole file read-only. An empty file maps to an empty
// slice (mmap rejects zero lengths).
func mmapFile(f *os.File, size int64) ([]byte, func() error, error) {
	if size == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}
