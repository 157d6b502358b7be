package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"tokengate/internal/testsvc"
)

// runBin runs the built binary in dir with stdin and returns stdout, stderr
// and the exit code.
func runBin(t *testing.T, dir, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = exitCode(err)
	if code < 0 {
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// dirEntries lists what dir holds, recursively, as slash paths.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Every configuration the repository ships passes check-config as shipped.
// The deploy kit's config names files that exist only in a pod, so it is
// checked with --config-only, and without it the missing files are named.
func TestShippedConfigsPassCheckConfig(t *testing.T) {
	root := filepath.Join("..", "..")
	t.Run("example", func(t *testing.T) {
		// A copy of the example and the users file it names, so the check
		// runs exactly as on a fresh clone and cannot touch the repository.
		dir := t.TempDir()
		copyFile(t, filepath.Join(root, "config.example.yaml"), filepath.Join(dir, "config.example.yaml"))
		copyFile(t, filepath.Join(root, "users.yaml"), filepath.Join(dir, "users.yaml"))
		out, errOut, code := runBin(t, dir, "", "check-config", "--config", "config.example.yaml")
		if code != 0 || !strings.Contains(out, "configuration OK") {
			t.Fatalf("check-config on the shipped example: exit %d\n%s%s", code, out, errOut)
		}
		if got := dirEntries(t, dir); !slices.Equal(got, []string{"config.example.yaml", "users.yaml"}) {
			t.Fatalf("check-config created files: %v", got)
		}
	})
	t.Run("kubernetes base", func(t *testing.T) {
		path, _ := filepath.Abs(filepath.Join(root, "deploy", "kubernetes", "base", "config.yaml"))
		out, errOut, code := runBin(t, t.TempDir(), "", "check-config", "--config-only", "--config", path)
		if code != 0 || !strings.Contains(out, "files and databases not checked") {
			t.Fatalf("check-config --config-only on the kit: exit %d\n%s%s", code, out, errOut)
		}
		_, errOut, code = runBin(t, t.TempDir(), "", "check-config", "--config", path)
		if code != 2 || !strings.Contains(errOut, "/etc/tokengate/") {
			t.Fatalf("check-config on the kit outside a pod: exit %d, want 2 naming the pod's files\n%s", code, errOut)
		}
	})
	t.Run("forward auth (upstream empty)", func(t *testing.T) {
		dir := t.TempDir()
		copyFile(t, filepath.Join(root, "deploy", "forward-auth", "tokengate.yaml"), filepath.Join(dir, "tokengate.yaml"))
		copyFile(t, filepath.Join(root, "users.yaml"), filepath.Join(dir, "users.yaml"))
		out, errOut, code := runBin(t, dir, "", "check-config", "--config", "tokengate.yaml")
		if code != 0 || !strings.Contains(out, "configuration OK") {
			t.Fatalf("check-config on deploy/forward-auth/tokengate.yaml: exit %d\n%s%s", code, out, errOut)
		}
		// Without trusted_proxies verify could never read the original
		// request: check-config (and serve) refuse it, saying why.
		b, _ := os.ReadFile(filepath.Join(dir, "tokengate.yaml"))
		var kept []string
		for line := range strings.Lines(string(b)) {
			if !strings.HasPrefix(line, "trusted_proxies:") {
				kept = append(kept, line)
			}
		}
		if len(kept) == strings.Count(string(b), "\n") {
			t.Fatal("test setup: no trusted_proxies line in the shipped tokengate.yaml")
		}
		os.WriteFile(filepath.Join(dir, "untrusted.yaml"), []byte(strings.Join(kept, "")), 0o600)
		_, errOut, code = runBin(t, dir, "", "check-config", "--config", "untrusted.yaml")
		if code != 2 || !strings.Contains(errOut, `trusted_proxies: auth-server mode (upstream: "") needs the ingress's addresses`) {
			t.Fatalf("check-config, auth-server mode without trusted_proxies: exit %d, want 2 naming trusted_proxies\n%s", code, errOut)
		}
	})
	t.Run("kubernetes overlays", func(t *testing.T) {
		// The overlays change tokengate's config through TOKENGATE_*
		// variables on the container: the base config with each overlay's
		// variables must pass too.
		base, _ := filepath.Abs(filepath.Join(root, "deploy", "kubernetes", "base", "config.yaml"))
		overlays, _ := filepath.Glob(filepath.Join(root, "deploy", "kubernetes", "overlays", "*"))
		if len(overlays) == 0 {
			t.Fatal("no overlays found")
		}
		for _, dir := range overlays {
			env := overlayEnv(t, dir)
			if filepath.Base(dir) == "replicas" && len(env) == 0 {
				t.Fatal("found no TOKENGATE_* variables in the replicas overlay (it sets the Redis backend)")
			}
			cmd := exec.Command(binPath, "check-config", "--config-only", "--config", base)
			cmd.Env = append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s (env %q): %v\n%s", filepath.Base(dir), env, err, out)
			}
		}
	})
	t.Run("config-only skips files", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("users:\n  file: missing.yaml\n"), 0o600)
		if _, errOut, code := runBin(t, dir, "", "check-config", "--config-only", "--config", "c.yaml"); code != 0 {
			t.Fatalf("--config-only opened the users file: exit %d\n%s", code, errOut)
		}
		// It still validates the configuration itself.
		os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("tokens:\n  ttl: 1000000h\n"), 0o600)
		_, errOut, code := runBin(t, dir, "", "check-config", "--config-only", "--config", "bad.yaml")
		if code != 2 || !strings.Contains(errOut, "tokens.ttl: must be at most 8784h0m0s") {
			t.Fatalf("--config-only on an absurd ttl: exit %d\n%s", code, errOut)
		}
	})
}

// serve checks every file before creating any: a missing users file is
// exit 2 (like check-config), and no signing key or database is left behind.
func TestServeMissingFileCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runBin(t, dir, "", "serve", "--config", "config.yaml")
	if code != 2 {
		t.Fatalf("serve without its users file: exit %d, want 2\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "users.file:") {
		t.Errorf("the error does not name users.file:\n%s", errOut)
	}
	if got := dirEntries(t, dir); !slices.Equal(got, []string{"config.yaml"}) {
		t.Fatalf("a failed start left files behind: %v", got)
	}
}

// --help on every subcommand prints that subcommand's flags on stdout and
// exits 0; a wrong flag is still exit 2 with the flags on stderr.
func TestSubcommandHelp(t *testing.T) {
	for _, tc := range []struct {
		cmd   string
		flags []string
	}{
		{"serve", []string{"-config"}},
		{"check-config", []string{"-config", "-config-only"}},
		{"hash-password", []string{"-algorithm", "-cost"}},
		{"revoke-user", []string{"-config", "-user", "-admin-url", "-force-id"}},
		{"demo", []string{"-listen", "-admin-listen", "-app-listen", "-dir"}},
		{"add-user", []string{"-config", "-user"}},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			for _, help := range []string{"--help", "-h"} {
				out, errOut, code := runBin(t, t.TempDir(), "", tc.cmd, help)
				if code != 0 {
					t.Fatalf("%s %s: exit %d\n%s", tc.cmd, help, code, errOut)
				}
				for _, f := range tc.flags {
					if !strings.Contains(out, "  "+f) {
						t.Errorf("%s %s: stdout lacks %s:\n%s", tc.cmd, help, f, out)
					}
				}
			}
			out, errOut, code := runBin(t, t.TempDir(), "", tc.cmd, "--no-such-flag")
			if code != 2 || out != "" || !strings.Contains(errOut, "no-such-flag") || !strings.Contains(errOut, tc.flags[0]) {
				t.Fatalf("%s --no-such-flag: exit %d\nstdout: %s\nstderr: %s", tc.cmd, code, out, errOut)
			}
		})
	}
}

// check-config finds the missing PostgreSQL table that serve would refuse,
// and names users.table.
func TestCheckConfigPostgresTable(t *testing.T) {
	url := testsvc.PostgresURL(t)
	dir := t.TempDir()
	table := fmt.Sprintf("tg_cli_missing_%d", os.Getpid())
	cfg := fmt.Sprintf("users:\n  backend: postgres\n  table: %s\n  migrate: false\n", table)
	os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600)
	env := "TOKENGATE_USERS_POSTGRES_URL=" + url
	cmd := exec.Command(binPath, "check-config", "--config", "config.yaml")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env)
	out, err := cmd.CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "users.table: ") || !strings.Contains(string(out), table) {
		t.Fatalf("check-config with a missing table: exit %d, want 2 naming users.table\n%s", code, out)
	}
	// With migrate on, serve would create it: check-config accepts the
	// config and creates nothing.
	cmd = exec.Command(binPath, "check-config", "--config", "config.yaml")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env, "TOKENGATE_USERS_MIGRATE=true")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("check-config with migrate on: %v\n%s", err, out)
	}
}

// The demo's own temp directory (signing key included) is removed when it
// stops; a --dir the user gave is kept.
func TestDemoRemovesItsTempDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  bool
	}{{"temp dir", false}, {"--dir", true}} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			args := []string{"demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--app-listen", "127.0.0.1:0"}
			if tc.dir {
				args = append(args, "--dir", filepath.Join(tmp, "mine"))
			}
			cmd := exec.Command(binPath, args...)
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() { cmd.Process.Kill(); <-done; done <- nil })
			files := regexp.MustCompile(`\(files in (\S+)\)`)
			sc := bufio.NewScanner(stdout)
			var dir string
			for sc.Scan() {
				if m := files.FindStringSubmatch(sc.Text()); m != nil {
					dir = m[1]
					break
				}
			}
			go io.Copy(io.Discard, stdout)
			if dir == "" {
				t.Fatal("demo printed no files directory")
			}
			if _, err := os.Stat(filepath.Join(dir, "signing.key")); err != nil {
				t.Fatalf("the demo's signing key: %v", err)
			}
			cmd.Process.Signal(os.Interrupt)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("demo exit after Ctrl-C: %v", err)
				}
				done <- nil
			case <-time.After(15 * time.Second):
				t.Fatal("demo did not stop on SIGINT")
			}
			_, err := os.Stat(dir)
			if tc.dir && err != nil {
				t.Fatalf("--dir was removed: %v", err)
			}
			if !tc.dir && !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the demo left %s behind (stat: %v)", dir, err)
			}
		})
	}
}

// add-user bootstraps a writable store: the user can log in afterwards; a
// second user of the same name, a weak password or a read-only store change
// nothing and say why.
func TestAddUser(t *testing.T) {
	up := newEchoUpstream(t)
	check := func(t *testing.T, dir string, env []string) {
		add := func(name, password string, env []string) (string, string, int) {
			cmd := exec.Command(binPath, "add-user", "--config", filepath.Join(dir, "config.yaml"), "--user", name)
			cmd.Env, cmd.Stdin = append(os.Environ(), env...), strings.NewReader(password+"\n")
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			code := exitCode(cmd.Run())
			return out.String(), errb.String(), code
		}
		if out, errOut, code := add("frank", "frank-password-1", env); code != 0 || !strings.Contains(out, `created user "frank"`) {
			t.Fatalf("add-user: exit %d\n%s%s", code, out, errOut)
		}
		if _, errOut, code := add("frank", "another-password-2", env); code != 1 || !strings.Contains(errOut, "already exists") {
			t.Fatalf("add-user twice: exit %d\n%s", code, errOut)
		}
		if _, errOut, code := add("grace", "short", env); code != 2 || !strings.Contains(errOut, "password") {
			t.Fatalf("add-user with a weak password: exit %d\n%s", code, errOut)
		}
		in := start(t, dir, env...)
		tok := login(t, in.Public, "frank", "frank-password-1")
		if r := call(t, "GET", in.Public+"/x", tok, ""); r.Code != 200 {
			t.Fatalf("the added user's token: %d %s", r.Code, r.Body)
		}
		if r := call(t, "POST", in.Public+"/user/login", "", `{"username":"grace","password":"short"}`); r.Code != 401 {
			t.Fatalf("refused user logged in: %d", r.Code)
		}
	}
	t.Run("bolt", func(t *testing.T) {
		check(t, newDir(t, up.URL), []string{"TOKENGATE_USERS_BACKEND=bolt", "TOKENGATE_USERS_PATH=users.db"})
	})
	t.Run("postgres", func(t *testing.T) {
		url := testsvc.PostgresURL(t)
		table := testsvc.TempTable(t, url, "tg_e2e_adduser")
		check(t, newDir(t, up.URL), []string{"TOKENGATE_USERS_BACKEND=postgres", "TOKENGATE_USERS_POSTGRES_URL=" + url,
			"TOKENGATE_USERS_TABLE=" + table, "TOKENGATE_USERS_MIGRATE=true"})
	})
	t.Run("file store is read-only", func(t *testing.T) {
		dir := newDir(t, up.URL)
		cmd := exec.Command(binPath, "add-user", "--config", filepath.Join(dir, "config.yaml"), "--user", "frank")
		cmd.Stdin = strings.NewReader("frank-password-1\n")
		out, err := cmd.CombinedOutput()
		if code := exitCode(err); code != 2 || !strings.Contains(string(out), "hash-password") {
			t.Fatalf("add-user on a users file: exit %d\n%s", code, out)
		}
	})
}

// A SIGHUP whose users file is good but whose keys are broken says so: the
// users were reloaded and the keys kept; no line claims the users were kept.
func TestSIGHUPReloadReportsEachPart(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	in := start(t, dir, "TOKENGATE_USERS_RELOAD_INTERVAL=1h")
	writeUsersFile(t, filepath.Join(dir, "users.yaml"), map[string]string{"carol": "carol-password-1"})
	os.Remove(filepath.Join(dir, "signing.key"))
	os.WriteFile(filepath.Join(dir, "signing.key"), []byte("not a key"), 0o600)
	in.signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "the reload failure is logged", func() bool {
		return strings.Contains(in.logs.String(), `"msg":"reload failed"`)
	})
	logs := in.logs.String()
	if !strings.Contains(logs, `"users":"reloaded"`) || !strings.Contains(logs, `"keys":"kept the previous keys"`) {
		t.Fatalf("the reload failure does not say what each part did:\n%s", logs)
	}
	if strings.Contains(logs, "keeping the previous users") {
		t.Fatalf("a line claims the users were kept although they were reloaded:\n%s", logs)
	}
	// And it is true: carol logs in, tokens are still signed with the old key.
	tok := login(t, in.Public, "carol", "carol-password-1")
	if r := call(t, "GET", in.Public+"/app", tok, ""); r.Code != 200 {
		t.Fatalf("a token after the partial reload: %d", r.Code)
	}
}

// overlayEnv returns the literal TOKENGATE_* variables an overlay's patches
// set on the tokengate container, as NAME=value.
func overlayEnv(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	var env []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Name string
							Env  []struct{ Name, Value string }
						}
					}
				}
			}
		}
		if yaml.Unmarshal(b, &doc) != nil {
			continue // not a Deployment patch
		}
		for _, c := range doc.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if c.Name == "tokengate" && strings.HasPrefix(e.Name, "TOKENGATE_") {
					env = append(env, e.Name+"="+e.Value)
				}
			}
		}
	}
	return env
}
