package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"tokengate/authn"
)

func TestServeEndToEnd(t *testing.T) {
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL))

	alice := login(t, in.Public, "alice", testUsers["alice"])
	bob := login(t, in.Public, "bob", testUsers["bob"])

	// The app sees exactly the token's user, whatever the client claimed.
	r := call(t, "GET", in.Public+"/app", alice, "", "X-Auth-UserId", "bob", "x_auth_userid", "bob")
	if r.Code != 200 || !strings.Contains(r.Body, `"user_id":["alice"]`) {
		t.Fatalf("proxied call: %d %s", r.Code, r.Body)
	}
	// No token: 401 JSON with WWW-Authenticate, and the app never sees it.
	before := len(up.seen)
	r = call(t, "GET", in.Public+"/app", "", "", "X-Auth-UserId", "alice")
	if r.Code != 401 || r.Header.Get("WWW-Authenticate") == "" || r.json(t)["error"] == nil {
		t.Fatalf("no token: %d %v %s", r.Code, r.Header, r.Body)
	}
	if len(up.seen) != before {
		t.Fatal("the upstream saw an unauthenticated request")
	}
	// Public path: anonymous, identity stripped.
	r = call(t, "GET", in.Public+"/public/x", "", "", "X-Auth-UserId", "alice")
	if r.Code != 200 || !strings.Contains(r.Body, `"user_id":null`) {
		t.Fatalf("public path: %d %s", r.Code, r.Body)
	}

	// logout revokes that token only.
	if r = call(t, "POST", in.Public+"/user/logout", alice, ""); r.Code != 204 {
		t.Fatalf("logout: %d %s", r.Code, r.Body)
	}
	if r = call(t, "GET", in.Public+"/app", alice, ""); r.Code != 401 {
		t.Fatalf("revoked token: %d %s", r.Code, r.Body)
	}
	if r = call(t, "POST", in.Public+"/user/logout", alice, ""); r.Code != 401 {
		t.Fatalf("second logout: %d %s", r.Code, r.Body)
	}
	if r = call(t, "GET", in.Public+"/app", bob, ""); r.Code != 200 {
		t.Fatalf("other user after logout: %d %s", r.Code, r.Body)
	}

	// logout_all: every token of bob dies, a newer one works at once.
	bob2 := login(t, in.Public, "bob", testUsers["bob"])
	alice2 := login(t, in.Public, "alice", testUsers["alice"])
	if r = call(t, "POST", in.Public+"/user/logout_all", bob, "", "X-Auth-UserId", "alice"); r.Code != 403 {
		t.Fatalf("logout_all naming another user: %d %s", r.Code, r.Body)
	}
	if r = call(t, "POST", in.Public+"/user/logout_all", "", "", "X-Auth-UserId", "bob"); r.Code != 401 {
		t.Fatalf("logout_all with only the identity header: %d %s", r.Code, r.Body)
	}
	if r = call(t, "POST", in.Public+"/user/logout_all", bob, ""); r.Code != 204 {
		t.Fatalf("logout_all: %d %s", r.Code, r.Body)
	}
	for _, tok := range []string{bob, bob2} {
		if r = call(t, "GET", in.Public+"/app", tok, ""); r.Code != 401 {
			t.Fatalf("token from before logout_all: %d %s", r.Code, r.Body)
		}
	}
	bob3 := login(t, in.Public, "bob", testUsers["bob"])
	if r = call(t, "GET", in.Public+"/app", bob3, ""); r.Code != 200 {
		t.Fatalf("token issued right after logout_all: %d %s", r.Code, r.Body)
	}
	if r = call(t, "GET", in.Public+"/app", alice2, ""); r.Code != 200 {
		t.Fatalf("other user's token after logout_all: %d %s", r.Code, r.Body)
	}

	// Bad credentials.
	if r = call(t, "POST", in.Public+"/user/login", "", `{"username":"alice","password":"nope-nope-nope"}`); r.Code != 401 {
		t.Fatalf("bad password: %d %s", r.Code, r.Body)
	}
	if r = call(t, "POST", in.Public+"/user/login", "", `{"username":"mallory","password":"nope-nope-nope"}`); r.Code != 401 {
		t.Fatalf("unknown user: %d %s", r.Code, r.Body)
	}

	// Logs never hold a token or a password.
	logs := in.logs.String()
	for _, secret := range []string{alice, bob, bob3, testUsers["alice"], testUsers["bob"]} {
		if strings.Contains(logs, secret) {
			t.Fatal("a token or password appears in the logs")
		}
	}
	in.signal(syscall.SIGTERM)
	if code := in.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d\n%s", code, in.logs)
	}
}

func TestHTTPieFormLogin(t *testing.T) {
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL))
	req, _ := http.NewRequest("POST", in.Public+"/user/login", strings.NewReader("username=alice&password="+testUsers["alice"]))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("form login: %d", resp.StatusCode)
	}
}

func TestGracefulShutdownDrainsInFlight(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	in := start(t, dir, "TOKENGATE_SERVER_SHUTDOWN_DELAY=300ms")
	tok := login(t, in.Public, "alice", testUsers["alice"])
	got := make(chan reply, 1)
	go func() { got <- call(t, "GET", in.Public+"/slow?sleep=800ms", tok, "") }()
	time.Sleep(200 * time.Millisecond) // let the request reach the upstream
	in.signal(syscall.SIGTERM)
	// Readiness fails first, during shutdown_delay.
	eventually(t, 2*time.Second, "readyz fails after SIGTERM", func() bool {
		resp, err := client.Get(in.Admin + "/readyz")
		if err != nil {
			return true
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	if r := <-got; r.Code != 200 {
		t.Fatalf("in-flight request during shutdown: %d %s", r.Code, r.Body)
	}
	if code := in.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code: %d", code)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := newDir(t, "http://127.0.0.1:1")
	good := exec.Command(binPath, "check-config", "--config", filepath.Join(dir, "config.yaml"))
	if out, err := good.CombinedOutput(); err != nil {
		t.Fatalf("valid config: %v\n%s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: 127.0.0.1:0\ntokens:\n  algoritm: EdDSA\n  ttl: soon\n"), 0o600)
	out, err := exec.Command(binPath, "check-config", "--config", bad).CombinedOutput()
	if code := exitCode(err); code != 2 {
		t.Fatalf("bad config exit code %d, want 2:\n%s", code, out)
	}
	for _, want := range []string{"tokens.algoritm", "line 3", "tokens.ttl"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}
	// It loads the files it names: a broken users file is reported.
	os.WriteFile(filepath.Join(dir, "users.yaml"), []byte("users: [{username: x}]\n"), 0o600)
	out, err = exec.Command(binPath, "check-config", "--config", filepath.Join(dir, "config.yaml")).CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "users.file") {
		t.Fatalf("broken users file: exit %d\n%s", code, out)
	}
	// serve refuses a bad config with exit 2 and starts nothing.
	out, err = exec.Command(binPath, "serve", "--config", bad).CombinedOutput()
	if code := exitCode(err); code != 2 {
		t.Fatalf("serve with a bad config: exit %d\n%s", code, out)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func TestHashPasswordCommand(t *testing.T) {
	for _, alg := range []string{"bcrypt", "argon2id"} {
		t.Run(alg, func(t *testing.T) {
			cmd := exec.Command(binPath, "hash-password", "--algorithm", alg, "--cost", "4")
			cmd.Stdin = strings.NewReader("correct horse battery\n")
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			hash := lines[len(lines)-1]
			if ok, err := authn.CheckPassword(hash, "correct horse battery"); !ok || err != nil {
				t.Fatalf("printed hash %q does not verify: %v", hash, err)
			}
			if ok, _ := authn.CheckPassword(hash, "correct horse battery\n"); ok {
				t.Fatal("the newline became part of the password")
			}
		})
	}
	cmd := exec.Command(binPath, "hash-password")
	cmd.Stdin = strings.NewReader("")
	if code := exitCode(cmd.Run()); code != 2 {
		t.Fatalf("empty stdin: exit %d, want 2", code)
	}
}

func TestVersionCommand(t *testing.T) {
	out, err := exec.Command(binPath, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "tokengate ") || !strings.Contains(string(out), "go1.") {
		t.Fatalf("version: %v %q", err, out)
	}
	if code := exitCode(exec.Command(binPath, "frobnicate").Run()); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
}

// demo is a running `tokengate demo`.
type demo struct {
	base   string   // tokengate's public URL
	output []string // what it printed up to the address line
	cmd    *exec.Cmd
	done   chan error
}

// startDemo runs the demo on free ports as a new user would.
func startDemo(t *testing.T) *demo {
	t.Helper()
	cmd := exec.Command(binPath, "demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--app-listen", "127.0.0.1:0", "--dir", filepath.Join(t.TempDir(), "not-yet"))
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &demo{cmd: cmd, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-d.done })
	addr := regexp.MustCompile(`tokengate \(public\): http://(\S+)`)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		d.output = append(d.output, sc.Text())
		if m := addr.FindStringSubmatch(sc.Text()); m != nil {
			d.base = "http://" + m[1]
			break
		}
	}
	if d.base == "" {
		t.Fatal("demo printed no address")
	}
	// The rest of the instructions follow the address line.
	rest := make(chan []string, 1)
	go func() {
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				break
			}
		}
		rest <- lines
		io.Copy(io.Discard, stdout)
	}()
	select {
	case lines := <-rest:
		d.output = append(d.output, lines...)
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not finish printing its instructions")
	}
	return d
}

// TestDemo runs the demo as a new user would and follows its instructions.
func TestDemo(t *testing.T) {
	d := startDemo(t)
	base := d.base
	printed := strings.Join(d.output, "\n")
	for _, want := range []string{"In a browser", "open " + base + "/ and sign in as marco", demoUser + " / " + demoPassword} {
		if !strings.Contains(printed, want) {
			t.Errorf("the instructions do not mention %q:\n%s", want, printed)
		}
	}
	tok := login(t, base, demoUser, demoPassword)
	r := call(t, "GET", base+"/hello", tok, "")
	if r.Code != 200 || r.json(t)["user_id"] != demoUser {
		t.Fatalf("demo app call: %d %s", r.Code, r.Body)
	}
	// A browser gets a page: the greeting, the headers, a sign-out link.
	r = call(t, "GET", base+"/hello", tok, "", "Accept", "text/html,application/xhtml+xml")
	if r.Code != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("demo app page: %d %s", r.Code, r.Header.Get("Content-Type"))
	}
	for _, want := range []string{`Hello, <span id="user">marco</span>`, "X-Auth-Userid", `href="/tokengate/sign_out"`} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("the demo page lacks %q:\n%s", want, r.Body)
		}
	}
	// tokengate removes the Bearer header (forward_authorization: false).
	if strings.Contains(r.Body, tok) || strings.Contains(r.Body, "Authorization") {
		t.Errorf("the demo app received the Authorization header:\n%s", r.Body)
	}
	if r = call(t, "POST", base+"/user/logout", tok, ""); r.Code != 204 {
		t.Fatalf("demo logout: %d", r.Code)
	}
	if r = call(t, "GET", base+"/hello", tok, ""); r.Code != 401 {
		t.Fatalf("after logout: %d", r.Code)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("demo exit: %v", err)
		}
		d.done <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop on SIGTERM")
	}
}
