package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMemFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := cmdMem(context.Background(), []string{"-cgroup-limit", "64 parsecs"}, &stdout, &stderr); code != 2 {
		t.Errorf("a bad -cgroup-limit: exit %d, want 2 (stderr %q)", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "unknown unit") {
		t.Errorf("stderr %q does not say what is wrong", stderr.String())
	}
}

// A small memory run against the real binary: bolt only, a few thousand
// revocations, and with root the same inside a 64 MiB cgroup. It checks
// the report's shape, not the figures.
func TestMemRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the memory run")
	}
	tg := filepath.Join(t.TempDir(), "tokengate")
	if out, err := exec.Command("go", "build", "-o", tg, "../tokengate").CombinedOutput(); err != nil {
		t.Fatalf("building tokengate: %v\n%s", err, out)
	}
	run := func(t *testing.T, extra ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		args := append([]string{"mem", "-tokengate", tg, "-conns", "20", "-revocations", "3000", "-requests", "1000", "-redis", ""}, extra...)
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, selfBinary(t), args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("mem %v: %v\nstdout:\n%s\nstderr:\n%s", extra, err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	report := run(t)
	for _, want := range []string{"| bolt, idle after start |", "| bolt, 20 idle keep-alive connections |",
		"| bolt, caches full |", "after 1000 distinct revoked tokens, each sent twice (all 401 revoked)",
		"The bolt file, filled one revocation per transaction", "3000 keys", "Memory per cache entry"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}

	if os.Geteuid() != 0 {
		t.Skip("the cgroup-limited run needs root")
	}
	report = run(t, "-cgroup-limit", "64MiB")
	if strings.HasPrefix(report, "cgroup-limited run skipped") {
		t.Skip(report)
	}
	for _, want := range []string{"GOMEMLIMIT=67108864", "| cgroup usage (anon + page cache) |",
		"bolt under a 64MiB limit: within the limit; all 2000 requests answered 401 token_revoked; OOM kills 0"} {
		if !strings.Contains(report, want) {
			t.Errorf("cgroup report lacks %q:\n%s", want, report)
		}
	}
	for _, pattern := range []string{"/sys/fs/cgroup/*/tokengate-loadbench-*", "/sys/fs/cgroup/*/*/tokengate-loadbench-*",
		"/sys/fs/cgroup/*/*/*/tokengate-loadbench-*", "/sys/fs/cgroup/*/*/*/*/tokengate-loadbench-*"} {
		if leftover, _ := filepath.Glob(pattern); len(leftover) > 0 {
			t.Errorf("cgroups left behind: %v", leftover)
		}
	}
}
