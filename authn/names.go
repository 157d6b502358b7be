package authn

import (
	"strings"
	"unicode/utf8"
)

// Login names are compared after ASCII case folding: "Dave", "dave" and
// "DAVE" are one user, found however the case was typed, and registration
// refuses the second spelling. Registered names are ASCII only (UserPolicy),
// so ASCII folding is complete for them; other characters of names from a
// users file or a table are compared exactly. The user's id, and the name
// in its tokens, keep the spelling the user was created with.

// foldName is the key a login name is looked up by: A-Z lowered, nothing else.
func foldName(name string) string {
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

// usableLoginName reports whether a login name can name anybody: valid
// UTF-8 without control characters (PostgreSQL refuses NUL and invalid
// UTF-8, and no policy ever registers such a name).
func usableLoginName(name string) bool {
	return utf8.ValidString(name) && !strings.ContainsFunc(name, isControl)
}

func isControl(r rune) bool { return r < 0x20 || (0x7f <= r && r < 0xa0) }
