package authn

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestHashAndCheckPassword(t *testing.T) {
	tests := []struct {
		name   string
		opts   HashOptions
		format *regexp.Regexp
	}{
		{"bcrypt default", HashOptions{BcryptCost: bcrypt.MinCost}, regexp.MustCompile(`^\$2a\$04\$[./A-Za-z0-9]{53}$`)},
		{"bcrypt named", HashOptions{Algorithm: "bcrypt", BcryptCost: 5}, regexp.MustCompile(`^\$2a\$05\$`)},
		{"argon2id", HashOptions{Algorithm: "argon2id"},
			regexp.MustCompile(`^\$argon2id\$v=19\$m=65536,t=3,p=2\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pw := "correct horse battery staple"
			h, err := HashPassword(pw, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.format.MatchString(h) {
				t.Errorf("hash %q does not match %v", h, tt.format)
			}
			h2, _ := HashPassword(pw, tt.opts)
			if h == h2 {
				t.Error("two hashes of the same password are equal: no salt")
			}
			for _, c := range []struct {
				pw   string
				want bool
			}{{pw, true}, {pw + " ", false}, {"", false}, {strings.ToUpper(pw), false}} {
				ok, err := CheckPassword(h, c.pw)
				if err != nil || ok != c.want {
					t.Errorf("CheckPassword(%q) = %v, %v; want %v", c.pw, ok, err, c.want)
				}
			}
		})
	}
}

func TestBcryptDefaultCost(t *testing.T) {
	h, err := HashPassword("a password", HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cost, _ := bcrypt.Cost([]byte(h)); cost != 10 {
		t.Errorf("default cost %d, want 10", cost)
	}
}

func TestBcrypt72ByteLimit(t *testing.T) {
	pw72 := strings.Repeat("p", 72)
	h, err := HashPassword(pw72, HashOptions{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatalf("72 bytes: %v", err)
	}
	_, err = HashPassword(pw72+"x", HashOptions{BcryptCost: bcrypt.MinCost})
	if !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("73 bytes: %v, want ErrWeakPassword", err)
	}
	if pe, ok := errors.AsType[*PolicyError](err); !ok || !strings.Contains(pe.Reason, "72") {
		t.Errorf("73 bytes: %#v, want a *PolicyError naming the limit", err)
	}
	// A longer password never matches by its 72-byte prefix.
	if ok, _ := CheckPassword(h, pw72+"x"); ok {
		t.Error("bcrypt hash of 72 bytes matched a 73-byte password (truncation)")
	}
	// Multi-byte characters count in bytes.
	if _, err := HashPassword(strings.Repeat("é", 37), HashOptions{BcryptCost: bcrypt.MinCost}); !errors.Is(err, ErrWeakPassword) {
		t.Errorf("74 bytes in 37 runes: %v, want ErrWeakPassword", err)
	}
	// argon2id has no such limit.
	long := strings.Repeat("q", 200)
	ha, err := HashPassword(long, HashOptions{Algorithm: HashArgon2id})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := CheckPassword(ha, long); !ok {
		t.Error("argon2id: long password does not match")
	}
	if ok, _ := CheckPassword(ha, long[:72]); ok {
		t.Error("argon2id matched a prefix")
	}
}

func TestBcryptVariants(t *testing.T) {
	h, _ := HashPassword("variant pw", HashOptions{BcryptCost: bcrypt.MinCost})
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		v := prefix + h[4:]
		if ok, err := CheckPassword(v, "variant pw"); !ok || err != nil {
			t.Errorf("%s: CheckPassword = %v, %v", prefix, ok, err)
		}
		if err := checkHashFormat(v); err != nil {
			t.Errorf("%s: checkHashFormat = %v", prefix, err)
		}
	}
}

func TestHashPasswordErrors(t *testing.T) {
	for name, opts := range map[string]HashOptions{
		"unknown algorithm": {Algorithm: "md5"},
		"cost too low":      {BcryptCost: 3},
		"cost too high":     {BcryptCost: 32},
	} {
		if h, err := HashPassword("a password", opts); err == nil {
			t.Errorf("%s: HashPassword = %q, want an error", name, h)
		}
	}
}

func TestCheckPasswordMalformedHash(t *testing.T) {
	valid, _ := HashPassword("pw", HashOptions{Algorithm: HashArgon2id})
	parts := strings.Split(valid, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	tests := map[string]string{
		"empty":              "",
		"plain text":         "pw",
		"md5 crypt":          "$1$abc$def",
		"argon2i":            strings.Replace(valid, "argon2id", "argon2i", 1),
		"bcrypt cut short":   "$2a$10$abc",
		"bcrypt bad cost":    "$2a$99$" + strings.Repeat("a", 53),
		"argon2 version":     with(2, "v=16"),
		"argon2 params":      with(3, "m=65536,t=3"),
		"argon2 param order": with(3, "t=3,m=65536,p=2"),
		"argon2 zero time":   with(3, "m=65536,t=0,p=2"),
		"argon2 huge memory": with(3, "m=4294967295,t=3,p=2"),
		"argon2 salt b64":    with(4, "!!!"),
		"argon2 padded salt": with(4, parts[4]+"=="),
		"argon2 short hash":  with(5, "AAAA"),
		"argon2 extra part":  valid + "$x",
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			ok, err := CheckPassword(h, "pw")
			if err == nil || ok {
				t.Errorf("CheckPassword = %v, %v; want an error", ok, err)
			}
			if checkHashFormat(h) == nil {
				t.Error("checkHashFormat accepted it")
			}
		})
	}
	if err := checkHashFormat(valid); err != nil {
		t.Errorf("valid argon2id hash refused: %v", err)
	}
}
