//go:build !linux

package cache

import "io/fs"

// statID falls back to size and mtime where device, inode and ctime are
// not portable.
func statID(fi fs.FileInfo) fileID {
	return fileID{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
}
