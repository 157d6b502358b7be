package authn

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Group names are what access rules match and what the app receives in
// the groups header (joined with commas), so every source (users file,
// SQL, LDAP, an identity provider) holds them to the same rules.

// MaxGroupNameBytes bounds one group name.
const MaxGroupNameBytes = 256

// MaxGroups bounds the groups of one user.
const MaxGroups = 256

// CheckGroupName says why name cannot be a group name, or returns nil: it
// must be non-empty valid UTF-8 of at most MaxGroupNameBytes, with no
// control character, no comma (the header's separator) and no leading or
// trailing space.
func CheckGroupName(name string) error {
	switch {
	case name == "":
		return errors.New("is empty")
	case len(name) > MaxGroupNameBytes:
		return fmt.Errorf("is longer than %d bytes", MaxGroupNameBytes)
	case !utf8.ValidString(name):
		return errors.New("is not valid UTF-8")
	case strings.ContainsFunc(name, isControl):
		return errors.New("contains a control character")
	case strings.Contains(name, ","):
		return errors.New("contains a comma (the groups header's separator)")
	case strings.TrimFunc(name, unicode.IsSpace) != name:
		return errors.New("starts or ends with a space")
	}
	return nil
}

// cleanGroups returns the usable groups of raw, in order, without
// duplicates or empty names, and the names it dropped for failing
// CheckGroupName (for the caller to log). Dropping a group can only take
// access away: rules grant access to groups, never refuse it. nil for none.
func cleanGroups(raw []string) (groups []string, dropped []string) {
	seen := make(map[string]bool, len(raw))
	for _, g := range raw {
		if g == "" || seen[g] {
			continue
		}
		if CheckGroupName(g) != nil || len(groups) == MaxGroups {
			dropped = append(dropped, g)
			continue
		}
		seen[g] = true
		groups = append(groups, g)
	}
	return groups, dropped
}

// splitGroups splits a delimited groups string (a legacy text column):
// names separated by commas, spaces around each ignored.
func splitGroups(s string) []string {
	var out []string
	for g := range strings.SplitSeq(s, ",") {
		if g = strings.TrimSpace(g); g != "" {
			out = append(out, g)
		}
	}
	return out
}
