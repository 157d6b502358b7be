package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
	}{
		{"64MiB", 64 << 20},
		{"64Mi", 64 << 20},
		{"67108864", 64 << 20},
		{"67108864B", 64 << 20},
		{" 1GiB ", 1 << 30},
		{"512KiB", 512 << 10},
		{"64M", 64e6},
		{"64MB", 64e6},
		{"2G", 2e9},
		{"100k", 100e3},
	}
	for _, tc := range cases {
		if got, err := parseSize(tc.in); err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "MiB", "64 MiBs", "64mb", "-1", "0", "1.5GiB", "9999999999999GiB"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}

// fakeFS answers readFile for the files it names.
type fakeFS map[string]string

func (f fakeFS) read(p string) (string, bool) {
	s, ok := f[p]
	return s, ok
}

func TestCgroupPlaces(t *testing.T) {
	const (
		hybridSelf = "4:memory:/process_api/abc\n1:cpu:/\n0::/\n"
		v2Self     = "0::/user.slice/session-1.scope\n"
	)
	cases := []struct {
		name string
		self string
		fs   fakeFS
		want []cgroupPlace
	}{
		{
			"hybrid: v1 memory, unified without memory (this machine's layout)",
			hybridSelf,
			fakeFS{
				"/sys/fs/cgroup/unified/cgroup.controllers":                       "hugetlb\n",
				"/sys/fs/cgroup/memory/memory.limit_in_bytes":                     "9223372036854771712\n",
				"/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes":     "9223372036854771712\n",
				"/sys/fs/cgroup/memory/process_api/abc/cgroup.procs":              "1\n",
				"/sys/fs/cgroup/memory/process_api/abc/memory.max_usage_in_bytes": "0\n",
			},
			[]cgroupPlace{{dir: "/sys/fs/cgroup/memory/process_api/abc"}},
		},
		{
			"v1 in a cgroup namespace: own cgroup not below the mount, so the mount's root",
			hybridSelf,
			fakeFS{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"},
			[]cgroupPlace{{dir: "/sys/fs/cgroup/memory"}},
		},
		{
			"hybrid with memory on the unified side: v2 first",
			hybridSelf,
			fakeFS{
				"/sys/fs/cgroup/unified/cgroup.controllers":   "memory pids\n",
				"/sys/fs/cgroup/memory/memory.limit_in_bytes": "1\n",
			},
			[]cgroupPlace{{dir: "/sys/fs/cgroup/unified", v2: true}, {dir: "/sys/fs/cgroup/memory"}},
		},
		{
			"unified only",
			v2Self,
			fakeFS{"/sys/fs/cgroup/user.slice/session-1.scope/cgroup.controllers": "cpuset cpu io memory pids\n"},
			[]cgroupPlace{{dir: "/sys/fs/cgroup/user.slice/session-1.scope", v2: true}},
		},
		{
			"unified without the memory controller, no v1",
			v2Self,
			fakeFS{"/sys/fs/cgroup/user.slice/session-1.scope/cgroup.controllers": "cpu io pids\n"},
			nil,
		},
		{
			"memory named only as part of another word",
			"4:memory_x:/a\n",
			fakeFS{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "1\n"},
			nil,
		},
		{"no cgroups at all", "", fakeFS{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := cgroupPlaces("/sys/fs/cgroup", tc.self, tc.fs.read)
			if len(got) != len(tc.want) {
				t.Fatalf("places %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("places %+v, want %+v", got, tc.want)
				}
			}
		})
	}
}

func TestParseCgroupFiles(t *testing.T) {
	oom := parseKeyValues("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
	if oom["oom_kill"] != 3 || oom["under_oom"] != 0 {
		t.Errorf("v1 memory.oom_control read as %v", oom)
	}
	ev := parseKeyValues("low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 0\n")
	if ev["max"] != 17 || ev["oom"] != 2 || ev["oom_kill"] != 1 {
		t.Errorf("v2 memory.events read as %v", ev)
	}
	st := parseKeyValues("cache 25468928\nrss 11943936\nrss_huge 0\ntotal_rss 11943936\ntotal_cache 25468928\n")
	if st["total_rss"] != 11943936 || st["total_cache"] != 25468928 {
		t.Errorf("v1 memory.stat read as %v", st)
	}
	for in, want := range map[string]int64{"67108864\n": 67108864, "max\n": -1, "0": 0} {
		if got, err := parseCount(in); err != nil || got != want {
			t.Errorf("parseCount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseCount("\n"); err == nil {
		t.Error("an empty file read as a count")
	}
}

// The real thing, where it can run (root, a memory controller): a child
// started through cgexec is in the cgroup and is charged for the file
// pages it reads; past the limit they are reclaimed, which the stats count,
// without an OOM kill; the cgroup goes away afterwards.
func TestMemCgroupRunsAChild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a cgroup needs root")
	}
	const limit = 16 << 20
	cg, err := newMemCgroup("tokengate-loadbench-test-"+strings.ReplaceAll(t.Name(), "/", "_"), limit)
	if errors.Is(err, errNoCgroups) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cg.remove(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(cg.dir); err == nil {
			t.Errorf("%s still there", cg.dir)
		}
	}()
	// A file three times the limit, just written (dirty), then out of the
	// page cache.
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("tokengate"), 3*limit/9), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := dropPageCache(big); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(selfBinary(t), "cgexec", cg.procsFile(), "/bin/sh", "-c",
		"cat "+big+" >/dev/null; cat /proc/self/cgroup").CombinedOutput()
	if err != nil {
		t.Fatalf("cgexec: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), filepath.Base(cg.dir)) {
		t.Errorf("the child's /proc/self/cgroup does not name %s:\n%s", cg.dir, out)
	}
	st := cg.stats()
	if st.peak <= limit/2 || st.peak > limit {
		t.Errorf("peak %d: the child's reads were not charged to the cgroup, or went past its limit %d", st.peak, limit)
	}
	if st.limitHits <= 0 {
		t.Errorf("reading 3x the limit did not count as reaching it: %+v", st)
	}
	if st.oomKills != 0 {
		t.Errorf("page cache alone caused an OOM kill: %+v", st)
	}
}
