package command

import "syscall"

// procAttr puts the program in its own process group (so that a
// cancelled run can stop a shell's children too) and asks the kernel to
// send it SIGTERM if pipe itself dies without cleaning up (SIGKILL, OOM
// killer), so that no stage program outlives the run that started it.
// The signal goes when the OS thread that started the program exits:
// runProgram keeps that thread locked until the program ends.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
