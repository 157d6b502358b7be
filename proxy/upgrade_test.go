package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// h2cApp is an app server that switches protocols on the Upgrade header
// alone, as h2c servers do (it needs no Connection token and answers before
// reading HTTP2-Settings): the kind of upstream that turns a forwarded
// Upgrade: h2c into a tunnel past tokengate.
type h2cApp struct {
	srv *httptest.Server

	mu   sync.Mutex
	seen []http.Header
}

func newH2CApp(t *testing.T) *h2cApp {
	a := &h2cApp{}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *h2cApp) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.seen = append(a.seen, r.Header.Clone())
	a.mu.Unlock()
	up := r.Header.Get("Upgrade")
	if r.URL.Path == "/always101" {
		up = "h2c" // switches even when not asked to
	}
	if up == "" {
		fmt.Fprintf(w, "plain %s as %q", r.URL.Path, r.Header.Get("X-Auth-UserId"))
		return
	}
	// Any upgrade is accepted, echoing what was asked (ReverseProxy checks
	// the 101 names the protocol the request named).
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", up)
	brw.Flush()
	// From here on the client talks to the app directly.
	line, err := brw.ReadString('\n')
	if err != nil {
		return
	}
	brw.WriteString("tunnel: " + line)
	brw.Flush()
}

func (a *h2cApp) last(t *testing.T) http.Header {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		t.Fatal("the app received nothing")
	}
	return a.seen[len(a.seen)-1]
}

// TestUpgradeOnlyWebSocket sends upgrade offers through tokengate to an app
// that accepts every one of them. Only a WebSocket upgrade may switch
// protocols; any other offer reaches the app as a plain request, with no
// Upgrade, Connection upgrade token or HTTP2-Settings, on public and private
// paths alike (issue 13).
func TestUpgradeOnlyWebSocket(t *testing.T) {
	app := newH2CApp(t)
	e := newEnv(t, envConfig{options: func(o *Options) {
		o.Upstream, _ = url.Parse(app.srv.URL)
	}})
	tok := e.issue("marco", "marco")
	const settings = "AAMAAABkAARAAAAAAAIAAAAA"
	tests := []struct {
		name    string
		path    string
		token   string
		headers []string // raw header lines
		tunnel  bool     // the app may switch protocols
	}{
		{name: "h2c on a public path", path: "/healthz",
			headers: []string{"Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: " + settings}},
		{name: "h2c on a private path with a token", path: "/app", token: tok,
			headers: []string{"Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: " + settings, "X-Auth-UserId: admin"}},
		{name: "h2c in capitals", path: "/healthz",
			headers: []string{"Connection: upgrade", "Upgrade: H2C"}},
		{name: "h2c without HTTP2-Settings in Connection", path: "/healthz",
			headers: []string{"Connection: keep-alive, Upgrade", "Upgrade: h2c", "HTTP2-Settings: " + settings}},
		{name: "websocket and h2c in one list", path: "/healthz",
			headers: []string{"Connection: Upgrade", "Upgrade: websocket, h2c"}},
		{name: "h2c line before a websocket line", path: "/healthz",
			headers: []string{"Connection: Upgrade", "Upgrade: h2c", "Upgrade: websocket"}},
		{name: "a protocol of its own", path: "/app", token: tok,
			headers: []string{"Connection: Upgrade", "Upgrade: tls/1.3"}},
		{name: "an app that switches unasked", path: "/always101", token: tok,
			headers: []string{"Connection: Upgrade", "Upgrade: h2c"}},
		{name: "HTTP2-Settings without an upgrade", path: "/healthz",
			headers: []string{"HTTP2-Settings: " + settings}},
		{name: "websocket", path: "/healthz", tunnel: true,
			headers: []string{"Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="}},
		{name: "websocket in capitals on a private path", path: "/app", token: tok, tunnel: true,
			headers: []string{"Connection: keep-alive, Upgrade", "Upgrade: WebSocket", "HTTP2-Settings: " + settings}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			req := "GET " + tt.path + " HTTP/1.1\r\nHost: tokengate.test\r\n" + strings.Join(tt.headers, "\r\n") + "\r\n"
			if tt.token != "" {
				req += "Authorization: Bearer " + tt.token + "\r\n"
			}
			io.WriteString(conn, req+"\r\n")
			br := bufio.NewReader(conn)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			seen := app.last(t)
			if got := seen.Values("Http2-Settings"); len(got) != 0 {
				t.Errorf("the app received HTTP2-Settings %q", got)
			}
			if tt.tunnel {
				if res.StatusCode != http.StatusSwitchingProtocols {
					t.Fatalf("status %d, want 101 for a WebSocket upgrade", res.StatusCode)
				}
				if got := seen.Values("Upgrade"); len(got) != 1 || !strings.EqualFold(got[0], "websocket") {
					t.Errorf("the app saw Upgrade %q", got)
				}
				io.WriteString(conn, "hello\n")
				if line, err := br.ReadString('\n'); err != nil || line != "tunnel: hello\n" {
					t.Fatalf("through the tunnel: %q, %v", line, err)
				}
				return
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if tt.path == "/always101" {
				if res.StatusCode != http.StatusBadGateway {
					t.Fatalf("status %d (%q), want 502 for a switch nobody asked for", res.StatusCode, body)
				}
				return
			}
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d (%q), want 200: the app must see a plain request, never switch protocols", res.StatusCode, body)
			}
			want := fmt.Sprintf("plain %s as %q", tt.path, "")
			if tt.token != "" {
				want = fmt.Sprintf("plain %s as %q", tt.path, "marco")
			}
			if string(body) != want {
				t.Errorf("body %q, want %q", body, want)
			}
			if got := seen.Values("Upgrade"); len(got) != 0 {
				t.Errorf("the app received Upgrade %q", got)
			}
			for _, c := range seen.Values("Connection") {
				if strings.Contains(strings.ToLower(c), "upgrade") {
					t.Errorf("the app received Connection %q", c)
				}
			}
		})
	}
}

// TestHTTP2PrefaceNotForwarded: tokengate's listener speaks HTTP/1.1 only.
// Go's server hands a bare HTTP/2 prior-knowledge preface to the handler as
// "PRI *" without headers: it is answered like any request without a token,
// and nothing reaches the app.
func TestHTTP2PrefaceNotForwarded(t *testing.T) {
	app := newH2CApp(t)
	e := newEnv(t, envConfig{options: func(o *Options) {
		o.Upstream, _ = url.Parse(app.srv.URL)
	}})
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("HTTP/2 preface: status %d, want 401", res.StatusCode)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if len(app.seen) != 0 {
		t.Errorf("the app received %d requests", len(app.seen))
	}
}
