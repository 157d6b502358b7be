package proxy

import (
	"net/http"
	"strings"
	"testing"

	"tokengate/access"
)

// stripper is a handler with the identity header X-Auth-UserId, and its
// stripHeaders with no access rules: what stripIdentity does to a request's
// headers, returning the identity values it removed.
func stripper(tb testing.TB) (*handler, func(http.Header) []string) {
	rules, err := access.Compile(access.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	h := &handler{identity: newHeaderName("X-Auth-UserId")}
	st := &requestState{access: &accessState{rules: rules}}
	return h, func(hdr http.Header) []string {
		st.claimed = st.claimed[:0]
		h.stripHeaders(st, hdr)
		return st.claimed
	}
}

func TestIdentityHeaderStrip(t *testing.T) {
	h, strip := stripper(t)
	id := h.identity
	tests := []struct {
		name    string
		header  http.Header
		removed int
	}{
		{"none", http.Header{"Accept": {"*/*"}}, 0},
		{"canonical", http.Header{"X-Auth-Userid": {"eve"}}, 1},
		{"several values", http.Header{"X-Auth-Userid": {"eve", "mallory"}}, 2},
		{"lower case", http.Header{"x-auth-userid": {"eve"}}, 1},
		{"upper case", http.Header{"X-AUTH-USERID": {"eve"}}, 1},
		{"underscores", http.Header{"X_Auth_UserId": {"eve"}}, 1},
		{"mixed", http.Header{"x_auth-USERID": {"eve"}, "X-Auth-Userid": {"eve"}, "Accept": {"*/*"}}, 2},
		{"prefix is not it", http.Header{"X-Auth-Userid2": {"eve"}, "X-Auth-User": {"eve"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tt.header)
			removed := strip(tt.header)
			if len(removed) != tt.removed {
				t.Errorf("removed %q, want %d values", removed, tt.removed)
			}
			for k := range tt.header {
				if id.matches(k) {
					t.Errorf("%q left in the header", k)
				}
			}
			if tt.removed == 0 && len(tt.header) != before {
				t.Errorf("unrelated headers removed: %v", tt.header)
			}
		})
	}
}

func TestIdentityStripDoesNotAllocate(t *testing.T) {
	_, strip := stripper(t)
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"x"}, "Authorization": {"Bearer x"}, "X-Auth-Useri": {"y"}}
	if n := testing.AllocsPerRun(100, func() { strip(h) }); n != 0 {
		t.Errorf("stripHeaders allocated %v times per call with no identity header", n)
	}
}

// FuzzIdentityHeaderName: matches agrees with the reference normalisation
// (lower case, '_' as '-').
func FuzzIdentityHeaderName(f *testing.F) {
	for _, s := range []string{"X-Auth-UserId", "x_auth_userid", "X-AUTH-USERID", "X-Auth-Userid ", "X\u212aAuth"} {
		f.Add(s)
	}
	h, strip := stripper(f)
	id := h.identity
	f.Fuzz(func(t *testing.T, key string) {
		want := strings.ReplaceAll(asciiLower(key), "_", "-") == "x-auth-userid"
		if got := id.matches(key); got != want {
			t.Fatalf("matches(%q) = %v, want %v", key, got, want)
		}
		hdr := http.Header{key: {"eve"}}
		if removed := strip(hdr); (len(removed) == 1) != want || (len(hdr) == 0) != want {
			t.Fatalf("stripHeaders(%q): removed %q, left %v", key, removed, hdr)
		}
	})
}

// asciiLower lower-cases ASCII only: HTTP field names are ASCII, and
// strings.ToLower would map the Kelvin sign to 'k'.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}
