//go:build !linux

package main

import (
	"errors"
	"fmt"
	"os"
)

// Memory cgroups are Linux's: elsewhere a -cgroup-limit run is skipped.

var errNoCgroups = errors.New("memory cgroups need Linux")

type cgroupStats struct {
	usage, peak, anon, file, limitHits, ooms, oomKills, majFaults int64
}

type memCgroup struct{ limit int64 }

func cgroupLimit(string) (int64, error)              { return 0, errNoCgroups }
func newMemCgroup(string, int64) (*memCgroup, error) { return nil, errNoCgroups }
func (c *memCgroup) String() string                  { return "no cgroup" }
func (c *memCgroup) procsFile() string               { return "" }
func (c *memCgroup) stats() cgroupStats              { return cgroupStats{} }
func (c *memCgroup) remove() error                   { return nil }
func dropPageCache(string) error                     { return nil }

func cmdCgexec([]string) int {
	fmt.Fprintln(os.Stderr, errNoCgroups)
	return 1
}
