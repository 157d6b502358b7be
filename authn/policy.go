package authn

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Password policy limits that are not configurable.
const (
	// bcryptMaxPasswordBytes is where bcrypt stops reading; longer passwords
	// are refused rather than silently truncated.
	bcryptMaxPasswordBytes = 72
	// maxPasswordBytes bounds what any hash is asked to chew on.
	maxPasswordBytes = 1024
)

// UserPolicy decides whether a new user name and password are acceptable.
// The zero value is ready to use with the defaults below.
type UserPolicy struct {
	// MinPasswordLength is the fewest characters (runes) a password may have;
	// default 10.
	MinPasswordLength int
	// MaxUsernameLength is the most characters a user name may have; default 64.
	MaxUsernameLength int
	// Algorithm is the hash new passwords get (HashOptions.Algorithm): ""
	// or "bcrypt" refuses passwords over 72 bytes, which bcrypt would
	// truncate. NewRegistrar sets it from its HashOptions.
	Algorithm string
}

// PolicyError says why a user name or password was refused. It wraps
// ErrInvalidUsername or ErrWeakPassword; Reason is safe to show to the
// client (it never contains the password).
type PolicyError struct {
	Err    error // ErrInvalidUsername or ErrWeakPassword
	Reason string
}

func (e *PolicyError) Error() string { return e.Err.Error() + ": " + e.Reason }
func (e *PolicyError) Unwrap() error { return e.Err }

func weak(format string, args ...any) error {
	return &PolicyError{Err: ErrWeakPassword, Reason: fmt.Sprintf(format, args...)}
}

func badName(format string, args ...any) error {
	return &PolicyError{Err: ErrInvalidUsername, Reason: fmt.Sprintf(format, args...)}
}

// Check returns nil when username and password may be registered, else a
// *PolicyError wrapping ErrInvalidUsername or ErrWeakPassword.
func (p UserPolicy) Check(username, password string) error {
	if err := p.checkUsername(username); err != nil {
		return err
	}
	return p.checkPassword(username, password)
}

func (p UserPolicy) checkUsername(name string) error {
	maxLen := p.MaxUsernameLength
	if maxLen <= 0 {
		maxLen = 64
	}
	switch {
	case name == "":
		return badName("username is empty")
	case strings.TrimSpace(name) != name:
		return badName("username has leading or trailing spaces")
	case len(name) > maxLen:
		return badName("username is longer than %d characters", maxLen)
	}
	for _, r := range name {
		if !usernameRune(r) {
			return badName("username may contain only letters A-Z a-z, digits and . _ @ + -")
		}
	}
	return nil
}

// usernameRune allows ASCII letters, digits and the few symbols of e-mail
// addresses: names end up in logs and headers, where anything else is
// trouble (look-alike Unicode, control characters, separators).
func usernameRune(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("._@+-", r)
}

func (p UserPolicy) checkPassword(username, password string) error {
	minLen := p.MinPasswordLength
	if minLen <= 0 {
		minLen = 10
	}
	switch {
	case !utf8.ValidString(password):
		return weak("password is not valid UTF-8")
	case utf8.RuneCountInString(password) < minLen:
		return weak("password must have at least %d characters", minLen)
	case len(password) > maxPasswordBytes:
		return weak("password must be at most %d bytes", maxPasswordBytes)
	case (p.Algorithm == "" || p.Algorithm == "bcrypt") && len(password) > bcryptMaxPasswordBytes:
		return weak("password must be at most %d bytes (bcrypt ignores the rest)", bcryptMaxPasswordBytes)
	case strings.EqualFold(password, username):
		return weak("password must differ from the username")
	}
	return nil
}
