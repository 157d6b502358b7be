//go:build !linux

package main

import "syscall"

// childProcAttr: without Pdeathsig, children are only killed by killAll.
func childProcAttr() *syscall.SysProcAttr { return nil }
