package proxy

import (
	"encoding/json"
	"strings"
	"testing"
)

// Whatever claims a provider (or userinfo) sends, mapping them never
// panics, and an accepted identity has a usable id, name and sid: at most
// maxClaimBytes, no control characters; email ids only when verified.
func FuzzOIDCIdentityFrom(f *testing.F) {
	f.Add(`{"sub":"alice","sid":"s1","groups":["ops"],"preferred_username":"alice"}`, "sub")
	f.Add(`{"sub":"a","email":"a@example.com","email_verified":"true","groups":"ops"}`, "email")
	f.Add(`{"sub":"a","email":"a@example.com","email_verified":false}`, "email")
	f.Add(`{"preferred_username":"b\u0000c","groups":[1,2]}`, "preferred_username")
	f.Add(`{"sub":{"x":1},"sid":null}`, "sub")
	f.Fuzz(func(t *testing.T, claims, idClaim string) {
		var raw map[string]json.RawMessage
		if json.Unmarshal([]byte(claims), &raw) != nil {
			return
		}
		switch idClaim {
		case "sub", "email", "preferred_username":
		default:
			return
		}
		c := &oidcClient{opts: OIDCOptions{IDClaim: idClaim, UsernameClaim: "preferred_username", GroupsClaim: "groups",
			AllowedEmailDomains: nil}}
		s, _, err := c.identityFrom(raw)
		if err != nil {
			return
		}
		for _, v := range []string{s.Subject, s.Username, s.SessionID} {
			if len(v) > maxClaimBytes || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("accepted %q from %s", v, claims)
			}
		}
		if s.Subject == "" || s.Username == "" {
			t.Fatalf("accepted an empty id or name from %s", claims)
		}
		if idClaim == "email" && !emailVerified(raw["email_verified"]) {
			t.Fatalf("an unverified email became the id: %s", claims)
		}
	})
}
