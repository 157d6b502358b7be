package main

import "syscall"

// childProcAttr makes the kernel kill a child if the load run itself dies
// (even by SIGKILL), so no server outlives it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
