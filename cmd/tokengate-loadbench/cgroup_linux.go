package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupStats is what a memory cgroup reports about its processes.
type cgroupStats struct {
	usage, peak int64 // bytes charged now, and the most ever (-1: unknown)
	anon, file  int64 // of usage: anonymous memory and page cache (-1: unknown)
	limitHits   int64 // times usage reached the limit and the kernel had to reclaim (v1 memory.failcnt, v2 memory.events max)
	ooms        int64 // times reclaim was not enough (v1 under_oom is not a count: -1; v2 memory.events oom)
	oomKills    int64 // processes the OOM killer killed in it
	majFaults   int64 // page faults that had to read from disk (bolt's pages read back after reclaim)
}

// cgroupLimit reads -cgroup-limit.
func cgroupLimit(s string) (int64, error) { return parseSize(s) }

// parseSize reads a memory size: a number of bytes, optionally with a unit,
// binary (Ki, Mi, Gi, KiB, MiB, GiB: powers of 1024, as GOMEMLIMIT and
// Kubernetes write them) or decimal (k, M, G, kB, MB, GB: powers of 1000,
// as Kubernetes reads M and G). "64MiB", "64Mi" and "67108864" are the
// same size.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(s)
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	if num == "" {
		return 0, fmt.Errorf("size %q: no number", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	mult := map[string]int64{
		"": 1, "B": 1,
		"Ki": 1 << 10, "KiB": 1 << 10, "Mi": 1 << 20, "MiB": 1 << 20, "Gi": 1 << 30, "GiB": 1 << 30,
		"k": 1e3, "kB": 1e3, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q (use bytes, KiB, MiB, GiB, or kB, MB, GB)", s, unit)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	if n*mult <= 0 {
		return 0, fmt.Errorf("size %q: must be positive", s)
	}
	return n * mult, nil
}

// cgroupPlace is a directory a fresh memory cgroup can be made in.
type cgroupPlace struct {
	dir string // the parent cgroup's directory
	v2  bool   // unified hierarchy (memory.max) rather than v1's memory controller (memory.limit_in_bytes)
}

// cgroupPlaces lists, best first, where a memory cgroup for a child could
// go, given the cgroup filesystem's root (/sys/fs/cgroup), this process's
// /proc/self/cgroup and a way to read a file. The parent is always the
// cgroup this process is in, so the child stays within whatever limits
// that one has; the unified hierarchy comes first (at root itself or at
// root/unified in hybrid mode) but only where its memory controller is
// enabled, then v1's memory controller at root/memory.
func cgroupPlaces(root, selfCgroup string, readFile func(string) (string, bool)) []cgroupPlace {
	var v1Path, v2Path string
	haveV1, haveV2 := false, false
	for _, line := range strings.Split(selfCgroup, "\n") {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2Path, haveV2 = parts[2], true
		case containsWord(parts[1], "memory", ","):
			v1Path, haveV1 = parts[2], true
		}
	}
	var places []cgroupPlace
	if haveV2 {
		for _, mount := range []string{root, path.Join(root, "unified")} {
			dir := path.Join(mount, v2Path)
			if ctl, ok := readFile(path.Join(dir, "cgroup.controllers")); ok && containsWord(ctl, "memory", " ") {
				places = append(places, cgroupPlace{dir: dir, v2: true})
				break
			}
		}
	}
	if haveV1 {
		mount := path.Join(root, "memory")
		for _, dir := range []string{path.Join(mount, v1Path), mount} {
			if _, ok := readFile(path.Join(dir, "memory.limit_in_bytes")); ok {
				places = append(places, cgroupPlace{dir: dir})
				break
			}
		}
	}
	return places
}

func containsWord(list, word, sep string) bool {
	for _, w := range strings.Split(strings.TrimSpace(list), sep) {
		if strings.TrimSpace(w) == word {
			return true
		}
	}
	return false
}

// parseKeyValues reads the kernel's "key value" lines (memory.stat,
// memory.events, memory.oom_control).
func parseKeyValues(s string) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// parseCount reads a file holding one number ("max" is unlimited: -1).
func parseCount(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return -1, nil
	}
	if s == "" {
		return 0, errors.New("empty")
	}
	return strconv.ParseInt(s, 10, 64)
}

var errNoCgroups = errors.New("no memory cgroup controller here: neither cgroup v2 with the memory controller (/sys/fs/cgroup or /sys/fs/cgroup/unified) nor cgroup v1's memory hierarchy (/sys/fs/cgroup/memory)")

// memCgroup is a memory cgroup this run made for one child, with a hard
// limit and no swap.
type memCgroup struct {
	dir        string
	v2         bool
	limit      int64
	enabledMem string // v2: the parent whose subtree_control this run turned memory on in
}

// newMemCgroup makes a fresh memory cgroup called name with a hard limit
// of limit bytes, in the first place cgroupPlaces names that takes it.
func newMemCgroup(name string, limit int64) (*memCgroup, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("memory cgroup: %w", err)
	}
	places := cgroupPlaces("/sys/fs/cgroup", string(self), func(p string) (string, bool) {
		b, err := os.ReadFile(p)
		return string(b), err == nil
	})
	if len(places) == 0 {
		return nil, errNoCgroups
	}
	var errs []error
	for _, pl := range places {
		cg, err := makeMemCgroup(pl, name, limit)
		if err == nil {
			return cg, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func makeMemCgroup(pl cgroupPlace, name string, limit int64) (*memCgroup, error) {
	cg := &memCgroup{dir: filepath.Join(pl.dir, name), v2: pl.v2, limit: limit}
	if pl.v2 {
		// A v2 cgroup has a memory controller only if its parent hands it down.
		ctl := filepath.Join(pl.dir, "cgroup.subtree_control")
		if sub, _ := os.ReadFile(ctl); !containsWord(string(sub), "memory", " ") {
			if err := os.WriteFile(ctl, []byte("+memory"), 0); err != nil {
				return nil, fmt.Errorf("cgroup v2 at %s: cannot enable the memory controller for its children: %w", pl.dir, err)
			}
			cg.enabledMem = pl.dir
		}
	}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		cg.undoEnable()
		return nil, fmt.Errorf("%s: %w", cg, err)
	}
	// No swap, as in a Kubernetes container: the limit is on memory alone.
	// v1 says so with swappiness 0 rather than a memory+swap limit, whose
	// refusals recent kernels do not count in any failcnt. (Either file is
	// absent when the kernel has no swap accounting.)
	limitFile, swapFile, swapValue := "memory.limit_in_bytes", "memory.swappiness", "0"
	if cg.v2 {
		limitFile, swapFile = "memory.max", "memory.swap.max"
	}
	err := os.WriteFile(filepath.Join(cg.dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0)
	if err == nil {
		if _, serr := os.Stat(filepath.Join(cg.dir, swapFile)); serr == nil {
			err = os.WriteFile(filepath.Join(cg.dir, swapFile), []byte(swapValue), 0)
		}
	}
	if err != nil {
		_ = cg.remove()
		return nil, fmt.Errorf("%s: setting the limit: %w", cg, err)
	}
	return cg, nil
}

func (c *memCgroup) String() string {
	if c.v2 {
		return "cgroup v2 " + c.dir
	}
	return "cgroup v1 " + c.dir
}

// procsFile is where a process writes its pid to join the cgroup.
func (c *memCgroup) procsFile() string { return filepath.Join(c.dir, "cgroup.procs") }

func (c *memCgroup) read(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name))
	return string(b)
}

func (c *memCgroup) count(name string) int64 {
	n, err := parseCount(c.read(name))
	if err != nil {
		return -1
	}
	return n
}

// stats reads what the kernel says about the cgroup now.
func (c *memCgroup) stats() cgroupStats {
	if c.v2 {
		st, ev := parseKeyValues(c.read("memory.stat")), parseKeyValues(c.read("memory.events"))
		return cgroupStats{
			usage: c.count("memory.current"), peak: c.count("memory.peak"), // memory.peak: Linux 5.19+
			anon: st["anon"], file: st["file"],
			limitHits: ev["max"], ooms: ev["oom"], oomKills: ev["oom_kill"],
			majFaults: st["pgmajfault"],
		}
	}
	st, oom := parseKeyValues(c.read("memory.stat")), parseKeyValues(c.read("memory.oom_control"))
	kills, ok := oom["oom_kill"] // Linux 4.13+
	if !ok {
		kills = -1
	}
	return cgroupStats{
		usage: c.count("memory.usage_in_bytes"), peak: c.count("memory.max_usage_in_bytes"),
		anon: st["total_rss"], file: st["total_cache"],
		limitHits: c.count("memory.failcnt"), ooms: -1, oomKills: kills,
		majFaults: st["total_pgmajfault"],
	}
}

// remove deletes the cgroup once its processes are gone (they must have
// been killed); what they left charged moves to the parent.
func (c *memCgroup) remove() error {
	var err error
	for range 50 {
		if err = os.Remove(c.dir); err == nil || errors.Is(err, fs.ErrNotExist) {
			c.undoEnable()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("removing %s: %w", c, err)
}

func (c *memCgroup) undoEnable() {
	if c.enabledMem != "" {
		_ = os.WriteFile(filepath.Join(c.enabledMem, "cgroup.subtree_control"), []byte("-memory"), 0)
		c.enabledMem = ""
	}
}

// cmdCgexec is the hidden subcommand `cgexec PROCS_FILE BINARY ARGS...`:
// it moves itself into the cgroup, then becomes BINARY, so everything the
// binary ever allocates is charged to the cgroup.
func cmdCgexec(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tokengate-loadbench cgexec CGROUP_PROCS_FILE BINARY [ARGS...]")
		return 2
	}
	if err := os.WriteFile(args[0], []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		fmt.Fprintf(os.Stderr, "cgexec: joining the cgroup: %v\n", err)
		return 1
	}
	err := syscall.Exec(args[1], args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "cgexec: %v\n", err)
	return 1
}

// dropPageCache asks the kernel to forget path's cached pages (those no
// process maps), so the next process to read them is charged for them, as
// on a fresh node. Dirty pages cannot be dropped, so it writes them first
// (a binary just built is all dirty).
func dropPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
