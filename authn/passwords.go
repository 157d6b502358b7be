package authn

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Password hash algorithms.
const (
	HashBcrypt   = "bcrypt"
	HashArgon2id = "argon2id"
)

// HashOptions choose the hash for new passwords.
type HashOptions struct {
	Algorithm  string // bcrypt (default) | argon2id
	BcryptCost int    // default 10 (bcrypt.DefaultCost); 4..31
}

// argon2id parameters for new hashes (RFC 9106's second recommended option
// with p=2): 64 MiB, 3 passes, 2 lanes, 16-byte salt, 32-byte key.
const (
	argon2Memory  = 64 * 1024
	argon2Time    = 3
	argon2Threads = 2
	argon2SaltLen = 16
	argon2KeyLen  = 32
)

// Bounds on argon2id parameters read from a hash, so a hostile or mistyped
// users file cannot make one login cost gigabytes or minutes.
const (
	argon2MaxMemory  = 1 << 20 // KiB: 1 GiB
	argon2MaxTime    = 64
	argon2MaxThreads = 64
	argon2MinKeyLen  = 16
	argon2MaxKeyLen  = 128
	argon2MinSaltLen = 8
	argon2MaxSaltLen = 64
)

// HashPassword hashes password; bcrypt refuses (ErrWeakPassword) over 72 bytes
// rather than truncate it.
func HashPassword(password string, opts HashOptions) (string, error) {
	switch opts.Algorithm {
	case "", HashBcrypt:
		if len(password) > bcryptMaxPasswordBytes {
			return "", &PolicyError{Err: ErrWeakPassword,
				Reason: fmt.Sprintf("password is %d bytes; bcrypt uses at most %d", len(password), bcryptMaxPasswordBytes)}
		}
		cost := opts.BcryptCost
		if cost == 0 {
			cost = bcrypt.DefaultCost
		}
		if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
			return "", fmt.Errorf("authn: bcrypt cost %d out of range %d..%d", cost, bcrypt.MinCost, bcrypt.MaxCost)
		}
		h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
		if err != nil {
			return "", fmt.Errorf("authn: bcrypt: %w", err)
		}
		return string(h), nil
	case HashArgon2id:
		salt := make([]byte, argon2SaltLen)
		rand.Read(salt)
		key := argon2.IDKey([]byte(password), salt, argon2Time, argon2Memory, argon2Threads, argon2KeyLen)
		return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argon2Memory, argon2Time, argon2Threads,
			base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
	}
	return "", fmt.Errorf("authn: unknown password hash algorithm %q (want bcrypt or argon2id)", opts.Algorithm)
}

// CheckPassword reports whether password matches hash (bcrypt $2a$/$2b$/$2y$
// or an argon2id PHC string). A malformed hash is an error, not a mismatch.
func CheckPassword(hash, password string) (bool, error) {
	switch {
	case isBcrypt(hash):
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return false, fmt.Errorf("authn: malformed bcrypt hash: %w", err)
		}
		if len(password) > bcryptMaxPasswordBytes {
			// We never hash such passwords; bcrypt would compare a prefix.
			return false, nil
		}
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, nil
		}
		return false, fmt.Errorf("authn: bcrypt: %w", err)
	case strings.HasPrefix(hash, "$argon2id$"):
		p, err := parseArgon2id(hash)
		if err != nil {
			return false, err
		}
		key := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
		return subtle.ConstantTimeCompare(key, p.key) == 1, nil
	}
	return false, errors.New("authn: unknown password hash format (want bcrypt or argon2id PHC)")
}

// checkHashFormat reports whether hash is a well-formed hash CheckPassword
// can use, without computing anything expensive.
func checkHashFormat(hash string) error {
	switch {
	case hash == "":
		return errors.New("empty password hash")
	case isBcrypt(hash):
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("malformed bcrypt hash: %w", err)
		}
		if len(hash) != 60 {
			return errors.New("malformed bcrypt hash: wrong length")
		}
		return nil
	case strings.HasPrefix(hash, "$argon2id$"):
		_, err := parseArgon2id(hash)
		return err
	}
	return errors.New("unknown password hash format (want bcrypt or argon2id PHC)")
}

func isBcrypt(hash string) bool {
	return strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")
}

type argon2Params struct {
	memory    uint32
	time      uint32
	threads   uint8
	salt, key []byte
}

// parseArgon2id reads $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>
// with salt and key in unpadded standard base64, as the PHC format says.
func parseArgon2id(hash string) (argon2Params, error) {
	var p argon2Params
	bad := func(why string) (argon2Params, error) {
		return argon2Params{}, fmt.Errorf("authn: malformed argon2id hash: %s", why)
	}
	parts := strings.Split(hash, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 {
		return bad("want $argon2id$v=19$m=..,t=..,p=..$salt$hash")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("unsupported version")
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return bad("want m, t and p parameters")
	}
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(params[i], name)
		if !ok {
			return bad("want parameters m, t, p in that order")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return bad("parameter " + name + " is not a positive number")
		}
		vals[i] = n
	}
	if vals[0] > argon2MaxMemory || vals[1] > argon2MaxTime || vals[2] > argon2MaxThreads {
		return bad("parameters too large")
	}
	if vals[0] < 8*vals[2] {
		return bad("m must be at least 8*p")
	}
	p.memory, p.time, p.threads = uint32(vals[0]), uint32(vals[1]), uint8(vals[2])
	var err error
	if p.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil {
		return bad("salt is not unpadded base64")
	}
	if p.key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5]); err != nil {
		return bad("hash is not unpadded base64")
	}
	if len(p.salt) < argon2MinSaltLen || len(p.salt) > argon2MaxSaltLen {
		return bad("salt length out of range")
	}
	if len(p.key) < argon2MinKeyLen || len(p.key) > argon2MaxKeyLen {
		return bad("hash length out of range")
	}
	return p, nil
}
