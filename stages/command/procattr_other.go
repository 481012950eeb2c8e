//go:build !linux

package command

import "syscall"

// procAttr puts the program in its own process group, so that a
// cancelled run can stop a shell's children too.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
