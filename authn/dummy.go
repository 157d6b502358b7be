package authn

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// hashParams are what decides how long checking a password against a hash
// takes. Two hashes with equal hashParams cost the same to check.
type hashParams struct {
	alg        string // HashBcrypt or HashArgon2id
	bcryptCost int
	memory     uint32 // argon2id: KiB
	time       uint32 // argon2id: passes
	threads    uint8  // argon2id: lanes
	saltLen    int    // argon2id: salt bytes
	keyLen     int    // argon2id: key bytes
}

// paramsOf reads the parameters of a hash CheckPassword can use; false for
// anything else (empty, "!", "*", md5..., malformed).
func paramsOf(hash string) (hashParams, bool) {
	if checkHashFormat(hash) != nil {
		return hashParams{}, false
	}
	if isBcrypt(hash) {
		cost, _ := bcrypt.Cost([]byte(hash))
		return hashParams{alg: HashBcrypt, bcryptCost: cost}, true
	}
	p, _ := parseArgon2id(hash) // checkHashFormat parsed it already
	return hashParams{alg: HashArgon2id, memory: p.memory, time: p.time, threads: p.threads,
		saltLen: len(p.salt), keyLen: len(p.key)}, true
}

// paramsFor is what HashPassword(_, opts) produces; false for bad options.
func paramsFor(opts HashOptions) (hashParams, bool) {
	switch opts.Algorithm {
	case "", HashBcrypt:
		cost := opts.BcryptCost
		if cost == 0 {
			cost = bcrypt.DefaultCost
		}
		return hashParams{alg: HashBcrypt, bcryptCost: cost}, cost >= bcrypt.MinCost && cost <= bcrypt.MaxCost
	case HashArgon2id:
		return hashParams{alg: HashArgon2id, memory: argon2Memory, time: argon2Time, threads: argon2Threads,
			saltLen: argon2SaltLen, keyLen: argon2KeyLen}, true
	}
	return hashParams{}, false
}

// Cost model for comparing parameter sets, in estimated nanoseconds on one
// core: bcrypt cost 10 about 60 ms, argon2id m=64 MiB t=3 about 75 ms. Within
// one algorithm the order is exact (bcrypt doubles per cost step, argon2id
// grows with memory x passes); across algorithms it is an estimate, which is
// why the README asks for one parameter set per store.
const (
	bcryptNanosPerRound   = 60e6 / 1024
	argon2NanosPerKiBPass = 75e6 / (64 * 1024 * 3)
)

// cost estimates how long checking a password against a hash with p takes.
func (p hashParams) cost() float64 {
	if p.alg == HashBcrypt {
		return float64(uint64(1)<<p.bcryptCost) * bcryptNanosPerRound
	}
	return float64(p.memory)*float64(p.time)*argon2NanosPerKiBPass + float64(p.keyLen) // key length breaks ties
}

// moreExpensive reports whether checking a hash with p costs more than one
// with q (a total order, so the most expensive of a set is well defined).
func (p hashParams) moreExpensive(q hashParams) bool {
	if p.cost() != q.cost() {
		return p.cost() > q.cost()
	}
	return p.threads < q.threads || (p.threads == q.threads && p.saltLen > q.saltLen) // fewer lanes: less parallel, slower
}

var bcryptB64 = base64.NewEncoding("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789").WithPadding(base64.NoPadding)

// dummyHash makes a hash with parameters p that no password matches (random
// salt and key, no hashing): checking a password against it costs what
// checking against a real hash with p costs. Cheap to make, so a dummy for a
// newly seen parameter set never delays a login.
func (p hashParams) dummyHash() string {
	if p.alg == HashBcrypt {
		salt, sum := make([]byte, 16), make([]byte, 23) // bcrypt's salt and digest sizes
		rand.Read(salt)
		rand.Read(sum)
		return fmt.Sprintf("$2a$%02d$%s%s", p.bcryptCost, bcryptB64.EncodeToString(salt), bcryptB64.EncodeToString(sum))
	}
	salt, key := make([]byte, p.saltLen), make([]byte, p.keyLen)
	rand.Read(salt)
	rand.Read(key)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

func (p hashParams) String() string {
	if p.alg == HashBcrypt {
		return fmt.Sprintf("bcrypt cost %d", p.bcryptCost)
	}
	return fmt.Sprintf("argon2id m=%d,t=%d,p=%d", p.memory, p.time, p.threads)
}
