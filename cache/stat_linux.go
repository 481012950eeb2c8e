package cache

import (
	"io/fs"
	"syscall"
)

func statID(fi fs.FileInfo) fileID {
	id := fileID{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Dev, id.Ino = uint64(st.Dev), st.Ino
		id.Ctime = st.Ctim.Sec*1e9 + st.Ctim.Nsec
	}
	return id
}
