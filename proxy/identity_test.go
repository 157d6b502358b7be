package proxy

import (
	"net/http"
	"strings"
	"testing"
)

func TestIdentityHeaderStrip(t *testing.T) {
	id := newIdentityHeader("X-Auth-UserId")
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
			removed := id.strip(tt.header)
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
	id := newIdentityHeader("X-Auth-UserId")
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"x"}, "Authorization": {"Bearer x"}, "X-Auth-Useri": {"y"}}
	if n := testing.AllocsPerRun(100, func() { id.strip(h) }); n != 0 {
		t.Errorf("strip allocated %v times per call with no identity header", n)
	}
}

// FuzzIdentityHeaderName: matches agrees with the reference normalisation
// (lower case, '_' as '-').
func FuzzIdentityHeaderName(f *testing.F) {
	for _, s := range []string{"X-Auth-UserId", "x_auth_userid", "X-AUTH-USERID", "X-Auth-Userid ", "X\u212aAuth"} {
		f.Add(s)
	}
	id := newIdentityHeader("X-Auth-UserId")
	f.Fuzz(func(t *testing.T, key string) {
		want := strings.ReplaceAll(asciiLower(key), "_", "-") == "x-auth-userid"
		if got := id.matches(key); got != want {
			t.Fatalf("matches(%q) = %v, want %v", key, got, want)
		}
		h := http.Header{key: {"eve"}}
		if removed := id.strip(h); (len(removed) == 1) != want || (len(h) == 0) != want {
			t.Fatalf("strip(%q): removed %q, left %v", key, removed, h)
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
