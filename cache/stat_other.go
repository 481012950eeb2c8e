//go:build !linux

package cache

import (
	"io/fs"
	"os"
	"path/filepath"
)

// statID falls back to size and mtime where device, inode and ctime are
// not portable.
func statID(fi fs.FileInfo) fileID {
	return fileID{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
}

func statAt(dir *os.File, dirPath, name string) (fileID, fs.FileMode, error) {
	fi, err := os.Stat(filepath.Join(dirPath, name))
	if err != nil {
		return fileID{}, 0, err
	}
	return statID(fi), fi.Mode(), nil
}
