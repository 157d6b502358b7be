package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"tokengate/internal/testkit"
)

// The end-to-end tests run the real binary, built once here.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokengate-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "tokengate")
	build := exec.Command("go", "build", "-o", binPath, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building tokengate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	closeBrowser()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Test users; bcrypt cost 4 keeps the suite fast.
var testUsers = map[string]string{"alice": "alice-password-1", "bob": "bob-password-1"}

func writeUsersFile(t *testing.T, path string, users map[string]string) {
	t.Helper()
	var list []testkit.User
	for name, pw := range users {
		list = append(list, testkit.User{Name: name, Password: pw})
	}
	testkit.WriteUsersFile(t, path, list...)
}

// echoUpstream is the protected app: it answers with what it received.
type echoUpstream struct {
	*httptest.Server
	mu    sync.Mutex
	seen  []http.Header
	paths []string
}

// sawPath reports whether any request for path reached the upstream.
func (u *echoUpstream) sawPath(path string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, p := range u.paths {
		if p == path {
			return true
		}
	}
	return false
}

// headersSeen is the headers of the last request for path.
func (u *echoUpstream) headersSeen(path string) (h http.Header, reached bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := len(u.paths) - 1; i >= 0; i-- {
		if u.paths[i] == path {
			return u.seen[i], true
		}
	}
	return nil, false
}

func newEchoUpstream(t *testing.T) *echoUpstream {
	t.Helper()
	u := &echoUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Clone())
		u.paths = append(u.paths, r.URL.Path)
		u.mu.Unlock()
		if d := r.URL.Query().Get("sleep"); d != "" {
			if dur, err := time.ParseDuration(d); err == nil {
				time.Sleep(dur)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"path":    r.URL.Path,
			"user_id": r.Header.Values("X-Auth-Userid"),
		})
	}))
	t.Cleanup(u.Close)
	return u
}

// instance is one running tokengate binary.
type instance struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	Public string // http://host:port
	Admin  string
	logs   *testkit.LogBuffer
	done   chan struct{}
	code   int
}

// baseConfig is a config for dir with free ports; tests vary it through
// TOKENGATE_* variables (which also exercises the environment overrides).
func baseConfig(upstream string) string {
	return fmt.Sprintf(`listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
upstream: %s
upstream_timeout: 2s
public_paths: ["/healthz", "/public"]
log_format: json
server:
  shutdown_delay: 0s
  shutdown_grace: 10s
tokens:
  algorithm: EdDSA
  signing_key_file: signing.key
users:
  backend: file
  file: users.yaml
  reload_interval: 100ms
revocation:
  backend: bolt
  path: revocations.db
  max_staleness: 5s
`, upstream)
}

// newDir prepares a directory with config.yaml and users.yaml.
func newDir(t *testing.T, upstream string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(baseConfig(upstream)), 0o600); err != nil {
		t.Fatal(err)
	}
	writeUsersFile(t, filepath.Join(dir, "users.yaml"), testUsers)
	return dir
}

// start runs `tokengate serve --config dir/config.yaml` with extra env and
// waits until it logs its listening addresses.
func start(t *testing.T, dir string, env ...string) *instance {
	t.Helper()
	in := &instance{t: t, dir: dir, logs: &testkit.LogBuffer{}, done: make(chan struct{})}
	in.cmd = exec.Command(binPath, "serve", "--config", filepath.Join(dir, "config.yaml"))
	in.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	in.cmd.Stderr = io.MultiWriter(in.logs, pw)
	in.cmd.Stdout = in.logs
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = in.cmd.Wait()
		in.code = in.cmd.ProcessState.ExitCode()
		pw.Close()
		close(in.done)
	}()
	t.Cleanup(func() { in.kill() })
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			var line struct {
				Msg    string `json:"msg"`
				Public string `json:"public"`
				Admin  string `json:"admin"`
			}
			if !signalled && json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				in.Public, in.Admin = "http://"+line.Public, "http://"+line.Admin
				signalled = true
				close(found)
			}
		}
	}()
	select {
	case <-found:
	case <-in.done:
		t.Fatalf("tokengate exited with %d before listening:\n%s", in.code, in.logs)
	case <-time.After(20 * time.Second):
		t.Fatalf("tokengate did not start within 20s:\n%s", in.logs)
	}
	// Send traffic only once the instance is ready and its dependencies
	// answer (with Redis, the pub/sub subscription comes up just after
	// listening; readiness itself is local and does not wait for it).
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(in.Admin + "/readyz?verbose")
		if err == nil {
			var body struct {
				Dependencies map[string]string `json:"dependencies"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			allUp := err == nil
			for _, state := range body.Dependencies {
				allUp = allUp && state == "ok"
			}
			if resp.StatusCode == http.StatusOK && allUp {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tokengate not ready within 10s:\n%s", in.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return in
}

func (in *instance) kill() {
	select {
	case <-in.done:
	default:
		_ = in.cmd.Process.Kill()
		<-in.done
	}
}

func (in *instance) signal(sig syscall.Signal) {
	in.t.Helper()
	if err := in.cmd.Process.Signal(sig); err != nil {
		in.t.Fatal(err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (in *instance) wait(timeout time.Duration) int {
	in.t.Helper()
	select {
	case <-in.done:
		return in.code
	case <-time.After(timeout):
		in.t.Fatalf("tokengate did not exit within %s:\n%s", timeout, in.logs)
		return -1
	}
}

var client = &http.Client{Timeout: 10 * time.Second}

type reply struct {
	Code   int
	Header http.Header
	Body   string
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.Body), &m); err != nil {
		t.Fatalf("body is not JSON: %q", r.Body)
	}
	return m
}

// call sends one request; token "" sends no Authorization header.
func call(t *testing.T, method, url, token string, body string, headers ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{Code: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

func login(t *testing.T, base, user, password string) string {
	t.Helper()
	r := call(t, "POST", base+"/user/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
	if r.Code != http.StatusOK {
		t.Fatalf("login %s: %d %s", user, r.Code, r.Body)
	}
	tok, _ := r.json(t)["token"].(string)
	if tok == "" {
		t.Fatalf("login %s: no token in %s", user, r.Body)
	}
	return tok
}

// eventually polls cond every 10ms until it is true or the deadline passes,
// and returns how long it took.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
