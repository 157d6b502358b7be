package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// switchAnyProtocol answers with 101 for whatever protocol up names, as an
// app that speaks h2c would, and hands the hijacked connection to tunnel:
// what a client sends after that reaches the app unchecked.
func switchAnyProtocol(w http.ResponseWriter, up string, tunnel func(*bufio.ReadWriter)) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", up)
	brw.Flush()
	tunnel(brw)
}

// TestUpgradeH2CNotForwarded runs the binary in front of an app that switches
// to any protocol it is offered on the Upgrade header alone. An h2c offer,
// with or without a token, must reach it as a plain request (issue 13: a 101
// there is a tunnel to the app with any path and any identity); a WebSocket
// upgrade still switches.
func TestUpgradeH2CNotForwarded(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		up := r.Header.Get("Upgrade")
		if up == "" {
			fmt.Fprintf(w, "plain as %q", r.Header.Get("X-Auth-Userid"))
			return
		}
		switchAnyProtocol(w, up, func(brw *bufio.ReadWriter) {
			if line, err := brw.ReadString('\n'); err == nil {
				brw.WriteString("tunnel: " + line)
				brw.Flush()
			}
		})
	}))
	t.Cleanup(app.Close)
	in := start(t, newDir(t, app.URL))
	tok := login(t, in.Public, "alice", testUsers["alice"])

	send := func(path, token, upgrade string) (*http.Response, *bufio.Reader, net.Conn) {
		t.Helper()
		conn, err := net.Dial("tcp", strings.TrimPrefix(in.Public, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		req := "GET " + path + " HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\n" +
			"Upgrade: " + upgrade + "\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-Auth-UserId: admin\r\n"
		if token != "" {
			req += "Authorization: Bearer " + token + "\r\n"
		}
		io.WriteString(conn, req+"\r\n")
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res, br, conn
	}
	lastSeen := func() http.Header {
		mu.Lock()
		defer mu.Unlock()
		return seen[len(seen)-1]
	}

	for _, tc := range []struct{ path, token, user string }{
		{"/public", "", ""},
		{"/private", tok, "alice"},
	} {
		res, _, _ := send(tc.path, tc.token, "h2c")
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || string(body) != fmt.Sprintf("plain as %q", tc.user) {
			t.Fatalf("h2c on %s: %d %q, want 200 from a plain request", tc.path, res.StatusCode, body)
		}
		if h := lastSeen(); h.Get("Upgrade") != "" || h.Get("Http2-Settings") != "" {
			t.Errorf("h2c on %s: the app saw Upgrade %q, HTTP2-Settings %q", tc.path, h.Get("Upgrade"), h.Get("Http2-Settings"))
		}
	}

	res, br, conn := send("/private", tok, "websocket")
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket: status %d, want 101", res.StatusCode)
	}
	io.WriteString(conn, "hello\n")
	if line, err := br.ReadString('\n'); err != nil || line != "tunnel: hello\n" {
		t.Fatalf("websocket tunnel: %q, %v", line, err)
	}
}
