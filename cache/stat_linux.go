package cache

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

func statID(fi fs.FileInfo) fileID {
	id := fileID{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Dev, id.Ino = uint64(st.Dev), st.Ino
		id.Ctime = st.Ctim.Nano()
	}
	return id
}

// statAt stats name inside the open folder dir (whose path is dirPath),
// following symbolic links. Resolving one name relative to an open folder
// is cheaper than resolving a whole path.
func statAt(dir *os.File, dirPath, name string) (fileID, fs.FileMode, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, 0); err != nil {
		return fileID{}, 0, &fs.PathError{Op: "stat", Path: filepath.Join(dirPath, name), Err: err}
	}
	id := fileID{
		Dev: uint64(st.Dev), Ino: st.Ino, Size: st.Size,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
	}
	mode := fs.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFREG:
	default:
		mode |= fs.ModeIrregular
	}
	return id, mode, nil
}
