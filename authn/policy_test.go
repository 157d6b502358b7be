package authn

import (
	"errors"
	"strings"
	"testing"
)

func TestUserPolicyCheck(t *testing.T) {
	const good = "correct horse battery"
	tests := []struct {
		name     string
		policy   UserPolicy
		username string
		password string
		want     error // nil, ErrInvalidUsername or ErrWeakPassword
	}{
		{name: "plain", username: "marco", password: good},
		{name: "email-like name", username: "marco.rossi+test@example.com", password: good},
		{name: "all allowed symbols", username: "a-b_c.d@e+f", password: good},
		{name: "empty username", username: "", password: good, want: ErrInvalidUsername},
		{name: "leading space", username: " marco", password: good, want: ErrInvalidUsername},
		{name: "trailing space", username: "marco ", password: good, want: ErrInvalidUsername},
		{name: "inner space", username: "mar co", password: good, want: ErrInvalidUsername},
		{name: "unicode name", username: "marcò", password: good, want: ErrInvalidUsername},
		{name: "cyrillic look-alike", username: "mаrco", password: good, want: ErrInvalidUsername},
		{name: "control char", username: "marco\n", password: good, want: ErrInvalidUsername},
		{name: "slash", username: "a/b", password: good, want: ErrInvalidUsername},
		{name: "name at default max 64", username: strings.Repeat("a", 64), password: good},
		{name: "name over default max", username: strings.Repeat("a", 65), password: good, want: ErrInvalidUsername},
		{name: "name over custom max", policy: UserPolicy{MaxUsernameLength: 5}, username: "marcos", password: good, want: ErrInvalidUsername},
		{name: "name at custom max", policy: UserPolicy{MaxUsernameLength: 5}, username: "marco", password: good},

		{name: "password 9 chars", username: "marco", password: "123456789", want: ErrWeakPassword},
		{name: "password 10 chars", username: "marco", password: "1234567890"},
		{name: "empty password", username: "marco", password: "", want: ErrWeakPassword},
		{name: "custom min", policy: UserPolicy{MinPasswordLength: 4}, username: "marco", password: "abcd"},
		{name: "custom min too short", policy: UserPolicy{MinPasswordLength: 12}, username: "marco", password: "abcdefghijk", want: ErrWeakPassword},
		// 5 runes of 3 bytes = 15 bytes: bytes would pass, runes must not.
		{name: "unicode counts runes", username: "marco", password: "日本語日本", want: ErrWeakPassword},
		{name: "unicode 10 runes", username: "marco", password: "日本語日本語日本語日"},
		{name: "invalid utf-8", username: "marco", password: "abcdefghij\xff", want: ErrWeakPassword},
		{name: "72 bytes bcrypt", username: "marco", password: strings.Repeat("x", 72)},
		{name: "73 bytes bcrypt", username: "marco", password: strings.Repeat("x", 73), want: ErrWeakPassword},
		{name: "73 bytes explicit bcrypt", policy: UserPolicy{Algorithm: "bcrypt"}, username: "marco", password: strings.Repeat("x", 73), want: ErrWeakPassword},
		// 24 runes of 3 bytes = 72 bytes; one more rune crosses the limit.
		{name: "72 bytes of unicode", username: "marco", password: strings.Repeat("語", 24)},
		{name: "75 bytes of unicode", username: "marco", password: strings.Repeat("語", 25), want: ErrWeakPassword},
		{name: "73 bytes argon2id", policy: UserPolicy{Algorithm: "argon2id"}, username: "marco", password: strings.Repeat("x", 73)},
		{name: "1024 bytes argon2id", policy: UserPolicy{Algorithm: "argon2id"}, username: "marco", password: strings.Repeat("x", 1024)},
		{name: "1025 bytes argon2id", policy: UserPolicy{Algorithm: "argon2id"}, username: "marco", password: strings.Repeat("x", 1025), want: ErrWeakPassword},
		{name: "password equals username", username: "marco.rossi", password: "marco.rossi", want: ErrWeakPassword},
		{name: "password equals username other case", username: "marco.rossi", password: "Marco.Rossi", want: ErrWeakPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(tt.username, tt.password)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			var pe *PolicyError
			if !errors.As(err, &pe) || pe.Reason == "" {
				t.Fatalf("Check = %#v, want a *PolicyError with a reason", err)
			}
			if tt.password != "" && strings.Contains(err.Error(), tt.password) {
				t.Fatalf("error %q contains the password", err)
			}
		})
	}
}

func TestUserPolicyReasonsAreSpecific(t *testing.T) {
	tests := []struct {
		username, password, wantIn string
	}{
		{"marco", "short", "at least 10"},
		{"marco", strings.Repeat("x", 73), "72 bytes"},
		{"marco.rossi", "marco.rossi", "differ from the username"},
		{" marco", "correct horse", "leading or trailing"},
		{strings.Repeat("a", 65), "correct horse", "longer than 64"},
		{"marco!", "correct horse", "may contain only"},
	}
	for _, tt := range tests {
		t.Run(tt.wantIn, func(t *testing.T) {
			err := UserPolicy{}.Check(tt.username, tt.password)
			if err == nil || !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("Check(%q, ...) = %v, want a reason containing %q", tt.username, err, tt.wantIn)
			}
		})
	}
}
