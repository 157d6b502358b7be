package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Limits on what a client controls, on the real server.
func TestServerLimits(t *testing.T) {
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), "TOKENGATE_SERVER_READ_HEADER_TIMEOUT=300ms", "TOKENGATE_SERVER_MAX_HEADER_BYTES=8192")
	tok := login(t, in.Public, "alice", testUsers["alice"])

	t.Run("headers over max_header_bytes get 431", func(t *testing.T) {
		r := call(t, "GET", in.Public+"/app", tok, "", "X-Big", strings.Repeat("a", 64<<10))
		if r.Code != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("got %d, want 431", r.Code)
		}
	})
	t.Run("identity endpoint body over 64 KiB gets 413", func(t *testing.T) {
		body := `{"username":"alice","password":"` + strings.Repeat("p", 70<<10) + `"}`
		if r := call(t, "POST", in.Public+"/user/login", "", body); r.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d, want 413", r.Code)
		}
	})
	t.Run("token over 8 KiB gets 401", func(t *testing.T) {
		if r := call(t, "GET", in.Public+"/app", strings.Repeat("A", 9<<10), ""); r.Code != http.StatusUnauthorized {
			t.Fatalf("got %d, want 401", r.Code)
		}
	})
	t.Run("slow headers are cut off by read_header_timeout", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(in.Public, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET /app HTTP/1.1\r\nHost: x\r\n") // and never finish the headers
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = bufio.NewReader(conn).ReadString('\n')
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the server kept a connection with unfinished headers open for 10s")
		}
	})
	t.Run("admin endpoints are not on the public port", func(t *testing.T) {
		for _, path := range []string{"/metrics", "/readyz", "/admin/revoke_user"} {
			if r := call(t, "GET", in.Public+path, "", ""); r.Code != http.StatusUnauthorized {
				t.Fatalf("public %s without a token: %d, want 401 (proxied, never served here)", path, r.Code)
			}
		}
	})
}
