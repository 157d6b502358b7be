package proxy

import (
	"bufio"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// rawUpstream records the header lines of each request exactly as they
// arrived on the wire (Go's server would canonicalise the names).
type rawUpstream struct {
	ln    net.Listener
	mu    sync.Mutex
	heads [][]string
}

func newRawUpstream(t *testing.T) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	return u
}

func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var lines []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				break
			}
			lines = append(lines, line)
		}
		u.mu.Lock()
		u.heads = append(u.heads, lines)
		u.mu.Unlock()
		if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")); err != nil {
			return
		}
	}
}

func (u *rawUpstream) last(t *testing.T) []string {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.heads) == 0 {
		t.Fatal("the upstream saw no request")
	}
	return u.heads[len(u.heads)-1]
}

// The app receives the identity header spelled exactly as configured, once:
// legacy apps sometimes match header names byte for byte.
func TestIdentityHeaderSpelledAsConfigured(t *testing.T) {
	for _, name := range []string{"X-Auth-UserId", "x-remote-USER", "X-Auth-Userid"} {
		t.Run(name, func(t *testing.T) {
			up := newRawUpstream(t)
			upURL, _ := url.Parse("http://" + up.ln.Addr().String())
			e := newEnv(t, envConfig{options: func(o *Options) { o.Upstream, o.IdentityHeader = upURL, name }})
			hdr := bearer(e.issue("marco", "marco"))
			hdr["X-Auth-Userid"] = []string{"admin"} // a spoof in two other spellings
			hdr[strings.ToUpper(name)] = []string{"root"}
			if res := e.do("GET", "/api/x", hdr, ""); res.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", res.StatusCode, res.body)
			}
			var got []string
			for _, line := range up.last(t) {
				k, _, _ := strings.Cut(line, ":")
				if newHeaderName(name).matches(k) {
					got = append(got, line)
				}
			}
			if want := name + ": marco"; len(got) != 1 || got[0] != want {
				t.Fatalf("identity header lines on the wire %q, want exactly [%q]", got, want)
			}
		})
	}
}
