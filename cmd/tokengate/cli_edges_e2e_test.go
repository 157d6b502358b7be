package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runBinFor runs the binary with a deadline: a command that should fail at
// once must not hang the suite if it serves instead.
func runBinFor(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v did not exit within 30s\nstdout: %s\nstderr: %s", args, out.String(), errb.String())
	}
	code = exitCode(err)
	if code < 0 {
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// `tokengate version --help` prints usage, as every command does, instead
// of the version; a stray argument is a usage error.
func TestVersionHelp(t *testing.T) {
	for _, help := range []string{"--help", "-h"} {
		out, errOut, code := runBin(t, t.TempDir(), "", "version", help)
		if code != 0 || !strings.HasPrefix(out, "usage: tokengate version") || strings.Contains(out, "commit") {
			t.Errorf("version %s: exit %d\nstdout: %s\nstderr: %s", help, code, out, errOut)
		}
	}
	if out, _, code := runBin(t, t.TempDir(), "", "version"); code != 0 || !strings.Contains(out, "commit") {
		t.Errorf("version: exit %d: %s", code, out)
	}
	if _, errOut, code := runBin(t, t.TempDir(), "", "version", "extra"); code != 2 || !strings.Contains(errOut, `unexpected argument "extra"`) {
		t.Errorf("version extra: exit %d\n%s", code, errOut)
	}
}

// A taken port is a plain error naming what sets the address (the demo's
// flag, serve's config key and variable), exit 1, never only a log line.
func TestTakenPortNamesItsFlag(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()
	free := "127.0.0.1:0"

	for _, tc := range []struct {
		name          string
		listen, admin string
		app           string
		want          string
	}{
		{"--listen", busy, free, free, "cannot listen on " + busy + " (listen): address already in use; use --listen to choose another address"},
		{"--admin-listen", free, busy, free, "cannot listen on " + busy + " (admin_listen): address already in use; use --admin-listen to choose another address"},
		{"--app-listen", free, free, busy, "cannot listen on " + busy + " (the demo echo app): address already in use; use --app-listen to choose another address"},
	} {
		t.Run("demo "+tc.name, func(t *testing.T) {
			out, errOut, code := runBinFor(t, t.TempDir(), nil, "demo", "--listen", tc.listen, "--admin-listen", tc.admin,
				"--app-listen", tc.app, "--dir", filepath.Join(t.TempDir(), "d"))
			if code != exitError || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, want %d and %q\nstdout: %s\nstderr: %s", code, exitError, tc.want, out, errOut)
			}
		})
	}
	for _, tc := range []struct{ key, env, want string }{
		{"listen", "TOKENGATE_LISTEN=" + busy, "cannot listen on " + busy + " (listen): address already in use; set listen in the config (or TOKENGATE_LISTEN)"},
		{"admin_listen", "TOKENGATE_ADMIN_LISTEN=" + busy, "cannot listen on " + busy + " (admin_listen): address already in use; set admin_listen in the config (or TOKENGATE_ADMIN_LISTEN)"},
	} {
		t.Run("serve "+tc.key, func(t *testing.T) {
			up := newEchoUpstream(t)
			dir := newDir(t, up.URL)
			out, errOut, code := runBinFor(t, dir, []string{tc.env}, "serve", "--config", "config.yaml")
			if code != exitError || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, want %d and %q\nstdout: %s\nstderr: %s", code, exitError, tc.want, out, errOut)
			}
		})
	}
}

// The demo's banner speaks to a user: no reference to documents they do
// not have, and the httpie hint scripts need.
func TestDemoBannerWording(t *testing.T) {
	d := startDemo(t)
	text := strings.Join(d.output, "\n")
	if strings.Contains(text, "seed") {
		t.Errorf("the banner mentions a seed document:\n%s", text)
	}
	if !strings.Contains(text, "--ignore-stdin") {
		t.Errorf("the banner's httpie lines do not say what scripts need:\n%s", text)
	}
}

// The app gets no Bearer token unless forward_authorization says so (here
// through its TOKENGATE_ variable): the wiring from config to proxy.
func TestForwardAuthorizationOption(t *testing.T) {
	for _, tc := range []struct {
		env      []string
		forwards bool
	}{
		{nil, false},
		{[]string{"TOKENGATE_FORWARD_AUTHORIZATION=true"}, true},
	} {
		up := newEchoUpstream(t)
		in := start(t, newDir(t, up.URL), tc.env...)
		token := login(t, in.Public, "alice", testUsers["alice"])
		if r := call(t, "GET", in.Public+"/app/authz", token, ""); r.Code != http.StatusOK {
			t.Fatalf("%v: %d %s", tc.env, r.Code, r.Body)
		}
		h, _ := up.headersSeen("/app/authz")
		if got := h.Get("Authorization"); (got == "Bearer "+token) != tc.forwards || (got != "" && !tc.forwards) {
			t.Errorf("%v: the app received an Authorization header: %v, want %v", tc.env, got != "", tc.forwards)
		}
	}
}
