package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const benchUser = "loadbench"

// instanceConfig is what differs between the tokengate instances of a run.
type instanceConfig struct {
	name      string
	algorithm string // HS256 or EdDSA
	backend   string // revocation backend: memory, bolt or redis
	redisURL  string // backend redis
	quiet     bool   // log_level: warn (no access log); else info, the default
	// defaultCaches keeps tokens.cache_size at its default instead of the
	// small cache that makes every unique token miss.
	defaultCaches bool
	env           []string   // extra environment (GOMEMLIMIT=...)
	accessRules   int        // access rules in the config; 0: none
	cgroup        *memCgroup // run in this memory cgroup; nil: where the run is
}

// tokengateSetup is what the run needs to know of the tokengate it started.
type tokengateSetup struct {
	cfg           instanceConfig
	public, admin string // http://host:port
	method        jwt.SigningMethod
	signKey       any    // what mints tokens: the HS256 secret or the Ed25519 private key
	token         string // from a real login
	kid           string
	claims        jwt.MapClaims // the login token's claims, copied into minted tokens
	cacheNote     string        // how the verified-token cache is made to miss
	version       string
	pid           int
	proc          *child
}

// tokenCacheSize is the verified-token cache size the run asks for: far
// below the unique-token pool, so cycling the pool always misses.
const tokenCacheSize = 1000

// configOptions are the optional keys of the generated config; each is
// dropped if check-config rejects it, so the run works with a tokengate
// that does not know it.
type configOptions struct {
	cacheSize bool
	logLevel  bool
}

// publicPrefix is a public path of every instance's config.
const publicPrefix = "/public"

// writeConfig writes the defaults except what ic and o name: the access log
// stays on (log_level info) unless ic.quiet.
func writeConfig(path string, listen, admin, upstream string, ic instanceConfig, o configOptions) error {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\nadmin_listen: %s\nupstream: %s\n", listen, admin, upstream)
	fmt.Fprintf(&b, "public_paths: [\"/healthz\", %q]\n", publicPrefix)
	if ic.quiet && o.logLevel {
		b.WriteString("log_level: warn\n") // no access log lines during load
	}
	fmt.Fprintf(&b, "tokens:\n  algorithm: %s\n  signing_key_file: signing.key\n  issuer: tokengate\n  ttl: 1h\n", ic.algorithm)
	if o.cacheSize {
		fmt.Fprintf(&b, "  cache_size: %d\n", tokenCacheSize)
	}
	b.WriteString("users:\n  backend: file\n  file: users.yaml\n")
	writeAccessRules(&b, ic.accessRules)
	fmt.Fprintf(&b, "revocation:\n  backend: %s\n", ic.backend)
	switch ic.backend {
	case "bolt":
		b.WriteString("  path: revocations.db\n")
	case "redis":
		fmt.Fprintf(&b, "  redis_url: %s\n", ic.redisURL)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// writeAccessRules writes n access rules: n-1 allow-lists on other paths
// (some also on a method or a host), then one that lets the load's user
// (group bench) reach the load's path, so every request is judged past
// them with the user's groups looked up.
func writeAccessRules(b *strings.Builder, n int) {
	if n <= 0 {
		return
	}
	b.WriteString("access:\n  rules:\n")
	for i := range n - 1 {
		fmt.Fprintf(b, "    - name: area%d\n      paths: [/area%d]\n      groups: [team%d]\n", i, i, i)
		switch i % 3 {
		case 1:
			b.WriteString("      methods: [POST, DELETE]\n")
		case 2:
			fmt.Fprintf(b, "      hosts: [.h%d.example.com]\n", i)
		}
	}
	b.WriteString("    - name: bench\n      paths: [/bench]\n      groups: [bench]\n")
}

// childEnv is the environment without TOKENGATE_* overrides, which would
// silently change the generated config.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOKENGATE_") {
			env = append(env, kv)
		}
	}
	return env
}

func runTool(ctx context.Context, bin string, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("tokengate %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()+stdout.String()))
	}
	return stdout.String(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// startTokengate writes a config into dir (ic's algorithm with a fresh key,
// one user, ic's revocation backend and log level), starts `tokengate
// serve`, waits for /readyz and logs in once.
func startTokengate(ctx context.Context, p *procs, bin, dir, upstream string, ic instanceConfig) (*tokengateSetup, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	bin = abs
	version, err := runTool(ctx, bin, "", "version")
	if err != nil {
		return nil, err
	}
	s := &tokengateSetup{cfg: ic, version: lastLine(version)}
	keyFile, err := s.newKey()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "signing.key"), keyFile, 0o600); err != nil {
		return nil, err
	}
	password := make([]byte, 16)
	_, _ = rand.Read(password)
	pw := hex.EncodeToString(password)
	out, err := runTool(ctx, bin, pw+"\n", "hash-password")
	if err != nil {
		return nil, err
	}
	users := fmt.Sprintf("users:\n  - username: %s\n    password_hash: %s\n", benchUser, strconv.Quote(lastLine(out)))
	if ic.accessRules > 0 {
		users += "    groups: [bench, staff]\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "users.yaml"), []byte(users), 0o600); err != nil {
		return nil, err
	}

	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "tokengate.yaml")
	opts := configOptions{cacheSize: !ic.defaultCaches, logLevel: true}
	for {
		if err := writeConfig(cfgPath, listen, admin, upstream, ic, opts); err != nil {
			return nil, err
		}
		_, err := runTool(ctx, bin, "", "check-config", "--config", cfgPath)
		if err == nil {
			break
		}
		switch {
		case opts.cacheSize && strings.Contains(err.Error(), "cache_size"):
			opts.cacheSize = false
		case opts.logLevel && strings.Contains(err.Error(), "log_level"):
			opts.logLevel = false
		default:
			return nil, err
		}
	}
	if opts.cacheSize {
		s.cacheNote = fmt.Sprintf("tokens.cache_size set to %d, so every unique token misses the verified-token cache", tokenCacheSize)
	} else {
		s.cacheNote = "tokens.cache_size is not a config key: relies on the pool being larger than the default cache"
	}

	path, args := bin, []string{"serve", "--config", cfgPath}
	if ic.cgroup != nil {
		// This binary joins the cgroup, then execs tokengate (same pid).
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		path, args = self, append([]string{"cgexec", ic.cgroup.procsFile(), bin}, args...)
		// The tools run above read the binary into the page cache, charged
		// to the run's cgroup; dropped, its pages are charged to tokengate's
		// as a container's are.
		_ = dropPageCache(bin)
	}
	c, err := p.start(ic.name, path, args, append(childEnv(), ic.env...))
	if err != nil {
		return nil, err
	}
	s.public, s.admin, s.pid, s.proc = "http://"+listen, "http://"+admin, c.cmd.Process.Pid, c
	if err := waitReady(ctx, c, s.admin+"/readyz", 20*time.Second); err != nil {
		return nil, err
	}
	if err := s.login(ctx, pw); err != nil {
		return nil, err
	}
	return s, nil
}

// waitReady polls url until it answers 200, the child exits, or timeout.
func waitReady(ctx context.Context, c *child, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	last := "no answer"
	for time.Now().Before(deadline) {
		if c.exited() {
			return fmt.Errorf("%s exited before it was ready: %s", c.name, c.stderr)
		}
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %v (%s); stderr: %s", c.name, timeout, last, c.stderr)
}

func (s *tokengateSetup) login(ctx context.Context, password string) error {
	body, _ := json.Marshal(map[string]string{"username": benchUser, "password": password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.public+"/user/login", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("login: %s: %s", resp.Status, raw)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Token == "" {
		return fmt.Errorf("login: no token in the answer (%v)", err)
	}
	s.token = out.Token
	header, claims, err := decodeJWT(out.Token)
	if err != nil {
		return fmt.Errorf("login token: %w", err)
	}
	if header["alg"] != s.method.Alg() {
		return fmt.Errorf("login token: alg %v, want %s", header["alg"], s.method.Alg())
	}
	kid, _ := header["kid"].(string)
	s.kid, s.claims = kid, claims
	return nil
}

// decodeJWT reads a JWT's header and claims without verifying it: the run
// only copies what tokengate put there.
func decodeJWT(token string) (header map[string]any, claims jwt.MapClaims, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, errors.New("not a JWS compact token")
	}
	for i, dst := range []any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, nil, err
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return nil, nil, err
		}
	}
	return header, claims, nil
}

// newKey makes the instance's signing key and returns the key file.
func (s *tokengateSetup) newKey() ([]byte, error) {
	switch s.cfg.algorithm {
	case "HS256":
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		hexSecret := []byte(hex.EncodeToString(secret))
		s.method, s.signKey = jwt.SigningMethodHS256, hexSecret
		return hexSecret, nil
	case "EdDSA":
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		s.method, s.signKey = jwt.SigningMethodEdDSA, priv
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	return nil, fmt.Errorf("algorithm %q: the load run knows HS256 and EdDSA", s.cfg.algorithm)
}

// mint signs n tokens as this instance would (see mintTokens).
func (s *tokengateSetup) mint(n int, now time.Time) ([]string, error) {
	return mintTokens(n, s.method, s.signKey, s.kid, s.claims, now)
}

// mintWithJTI signs one token as this instance would, with the given jti
// and exp.
func (s *tokengateSetup) mintWithJTI(jti string, exp time.Time) (string, error) {
	claims := jwt.MapClaims{}
	for k, v := range s.claims {
		claims[k] = v
	}
	claims["jti"] = jti
	claims["exp"] = jwt.NewNumericDate(exp)
	t := jwt.NewWithClaims(s.method, claims)
	if s.kid != "" {
		t.Header["kid"] = s.kid
	}
	return t.SignedString(s.signKey)
}

// mintTokens signs n distinct valid tokens as tokengate would: the login
// token's claims (iss, sub, name, aud...) with a fresh jti, iat/nbf now and
// exp in an hour, the same kid, the same key.
func mintTokens(n int, method jwt.SigningMethod, key any, kid string, base jwt.MapClaims, now time.Time) ([]string, error) {
	out := make([]string, n)
	jti := make([]byte, 16)
	for i := range out {
		claims := jwt.MapClaims{}
		for k, v := range base {
			claims[k] = v
		}
		_, _ = rand.Read(jti)
		claims["jti"] = base64.RawURLEncoding.EncodeToString(jti)
		claims["iat"] = jwt.NewNumericDate(now)
		claims["nbf"] = jwt.NewNumericDate(now)
		claims["exp"] = jwt.NewNumericDate(now.Add(time.Hour))
		t := jwt.NewWithClaims(method, claims)
		if kid != "" {
			t.Header["kid"] = kid
		}
		signed, err := t.SignedString(key)
		if err != nil {
			return nil, err
		}
		out[i] = signed
	}
	return out, nil
}

// tokenCacheCounts scrapes tokengate_token_cache_requests_total from the
// admin listener: hit and miss, ok false when the metric is absent.
func tokenCacheCounts(ctx context.Context, admin string) (hit, miss float64, ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/metrics", nil)
	if err != nil {
		return 0, 0, false
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var seenHit, seenMiss bool
	for sc.Scan() {
		line := sc.Text()
		name, value, found := strings.Cut(line, " ")
		if !found || !strings.HasPrefix(name, "tokengate_token_cache_requests_total{") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(name, `result="hit"`):
			hit, seenHit = v, true
		case strings.Contains(name, `result="miss"`):
			miss, seenMiss = v, true
		}
	}
	return hit, miss, seenHit || seenMiss
}
