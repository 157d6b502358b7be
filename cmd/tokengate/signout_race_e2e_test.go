package main

import (
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tokengate/internal/testsvc"
)

// sessionCookie is the session cookie's name with the defaults
// (cookie_secure: true, no cookie_domain).
const sessionCookie = "__Host-tokengate"

// derivedTokens collects every token the storm obtained from one sign-in.
type derivedTokens struct {
	mu     sync.Mutex
	tokens map[string]bool
}

func (d *derivedTokens) add(tok string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tokens[tok] = true
}

func (d *derivedTokens) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.tokens))
	for tok := range d.tokens {
		out = append(out, tok)
	}
	return out
}

// tokenTimes reads iat and auth_time from a token's payload (no check: the
// test only sorts tokens it got from tokengate itself).
func tokenTimes(t *testing.T, tok string) (iat, authTime float64) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		IAT      float64 `json:"iat"`
		AuthTime float64 `json:"auth_time"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.IAT, c.AuthTime
}

// sendRaw sends one request without following redirects.
func sendRaw(method, target string, hdr http.Header, body string) (*http.Response, string, error) {
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	req.Header = hdr
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(b), err
}

func cookieIn(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Issue 21 point 1 on the built binary: two replicas sharing Redis, tokens
// living 4s. Past half-life, 16 workers send the session cookie to both
// replicas (proxied requests and verify, each renewing it), and refresh
// with PUT /session every token they get, while the browser's "Sign out
// everywhere" (scope=everywhere) is posted to replica A. Afterwards no
// token derived from that sign-in works on either replica, however late it
// was issued, and none comes back; a new sign-in works at once.
func TestSignOutEverywhereRacingRenewals(t *testing.T) {
	addr := testsvc.RedisAddr(t)
	env := append(redisEnv(addr), "TOKENGATE_TOKENS_TTL=4s", "TOKENGATE_TOKENS_LEEWAY=1s")
	a, b := startReplicas(t, newEchoUpstream(t), env...)
	replicas := []*instance{a, b}

	issuedAfter := 0 // over the rounds: tokens issued after the sign-out was sent
	for round := range 3 {
		signedIn := login(t, a.Public, "bob", testUsers["bob"])
		_, signedInAt := tokenTimes(t, signedIn)

		// The sign-out page's form (CSRF field and cookie), fetched ahead.
		resp, page, err := sendRaw("GET", a.Public+"/tokengate/sign_out", http.Header{"Cookie": {sessionCookie + "=" + signedIn}}, "")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("sign-out page: %v %v", err, resp)
		}
		m := csrfInput.FindStringSubmatch(page)
		var csrfCookie *http.Cookie
		for _, c := range resp.Cookies() {
			if strings.HasSuffix(c.Name, "_csrf") {
				csrfCookie = c
			}
		}
		if m == nil || csrfCookie == nil {
			t.Fatalf("sign-out page without a CSRF field or cookie")
		}

		time.Sleep(2100 * time.Millisecond) // past half of 4s: every cookie request renews

		derived := &derivedTokens{tokens: map[string]bool{signedIn: true}}
		var (
			stop     atomic.Bool
			wg       sync.WaitGroup
			requests atomic.Int64
			statusMu sync.Mutex
			statuses = map[string]int{}
		)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					base := replicas[(w+i)%2].Public
					cookie := http.Header{"Cookie": {sessionCookie + "=" + signedIn}, "Accept": {"application/json"}}
					var target, method string
					switch (w + i) % 3 {
					case 0:
						method, target = "GET", base+"/app"
					case 1:
						method, target = "GET", base+"/tokengate/verify"
					case 2:
						method, target = "PUT", base+"/session"
					}
					if method == "PUT" {
						// Refresh a renewed token (each can win once), never
						// the sign-in's own: the cookie requests and the
						// sign-out need it alive.
						toks := derived.list()
						tok := toks[(w*7+i)%len(toks)]
						if tok == signedIn {
							method, target = "GET", base+"/app"
						} else {
							cookie = http.Header{"Authorization": {"Bearer " + tok}}
						}
					}
					resp, body, err := sendRaw(method, target, cookie, "")
					if err != nil {
						continue // the test's end, or a replica busy: nothing was issued to us
					}
					requests.Add(1)
					statusMu.Lock()
					statuses[method+" "+target[len(base):]+" "+resp.Status]++
					statusMu.Unlock()
					if c := cookieIn(resp, sessionCookie); c != nil && c.Value != "" {
						derived.add(c.Value)
					}
					if method == "PUT" && resp.StatusCode == 200 {
						var out struct{ Token string }
						if json.Unmarshal([]byte(body), &out) == nil && out.Token != "" {
							derived.add(out.Token)
						}
					}
				}
			}()
		}

		time.Sleep(150 * time.Millisecond) // the storm is under way
		form := url.Values{"csrf": {html.UnescapeString(m[1])}, "scope": {"everywhere"}}
		signOutStart := time.Now()
		resp, body, err := sendRaw("POST", a.Public+"/tokengate/sign_out", http.Header{
			"Content-Type": {"application/x-www-form-urlencoded"},
			"Cookie":       {sessionCookie + "=" + signedIn + "; " + csrfCookie.Name + "=" + csrfCookie.Value},
		}, form.Encode())
		signedOut := time.Now()
		if err != nil || resp.StatusCode != http.StatusSeeOther {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("sign out everywhere: %v %v %s", err, resp, body)
		}
		time.Sleep(300 * time.Millisecond) // requests in flight at the sign-out finish, more are refused
		stop.Store(true)
		wg.Wait()

		t.Logf("round %d: answers %v", round, statuses)
		toks := derived.list()
		after := 0
		for _, tok := range toks {
			iat, authTime := tokenTimes(t, tok)
			if authTime != signedInAt {
				t.Fatalf("a derived token carries auth_time %f, the sign-in's is %f", authTime, signedInAt)
			}
			if iat > float64(signOutStart.UnixMicro())/1e6 {
				after++
			}
		}
		issuedAfter += after
		t.Logf("round %d: %d requests, %d tokens derived from the sign-in, %d issued after the sign-out was sent (it took %s)",
			round, requests.Load(), len(toks), after, signedOut.Sub(signOutStart).Round(time.Millisecond))

		// Pub/sub tells both replicas at once; max_staleness is 30s, so only
		// the cutoff itself can explain refusals within this second.
		for _, in := range replicas {
			for _, tok := range toks {
				deadline := time.Now().Add(time.Second)
				for {
					r := call(t, "GET", in.Public+"/app", tok, "")
					if r.Code == http.StatusUnauthorized {
						break
					}
					if time.Now().After(deadline) {
						iat, authTime := tokenTimes(t, tok)
						t.Fatalf("round %d: a token derived from the signed-out sign-in (iat %f, auth_time %f; sign-out sent at %f) still answers %d %s",
							round, iat, authTime, float64(signOutStart.UnixMicro())/1e6, r.Code, r.Body)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		}
		// ...and none comes back: not through a renewal, not a refresh.
		time.Sleep(500 * time.Millisecond)
		for _, in := range replicas {
			for _, tok := range toks {
				if r := call(t, "GET", in.Public+"/app", tok, ""); r.Code != http.StatusUnauthorized {
					t.Fatalf("round %d: a derived token works again: %d %s", round, r.Code, r.Body)
				}
				if r := call(t, "PUT", in.Public+"/session", tok, ""); r.Code != http.StatusUnauthorized {
					t.Fatalf("round %d: a derived token refreshes: %d %s", round, r.Code, r.Body)
				}
				resp, _, err := sendRaw("GET", in.Public+"/app", http.Header{"Cookie": {sessionCookie + "=" + tok}, "Accept": {"application/json"}}, "")
				if err != nil || resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("round %d: a derived token as the cookie: %v %v", round, err, resp)
				}
			}
		}
		// A new sign-in right after works at once, on both replicas.
		fresh := login(t, b.Public, "bob", testUsers["bob"])
		for _, in := range replicas {
			if r := call(t, "GET", in.Public+"/app", fresh, ""); r.Code != http.StatusOK {
				t.Fatalf("round %d: a new sign-in after the sign-out: %d %s", round, r.Code, r.Body)
			}
		}
	}
	if issuedAfter == 0 {
		t.Fatal("no token was issued after a sign-out was sent: the storm never overlapped the sign-out, nothing was raced")
	}
}
