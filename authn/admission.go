package authn

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
)

// doorkeeper decides which verified tokens enter the verified-token cache:
// a token is cached the second time it is seen, not the first. A token
// that comes once (a one-off script, a flood of freshly minted tokens) then
// costs no cache insert, no eviction of a token that does come back, and no
// garbage; a token that comes back is cached from its second request on.
// Tokens this process issues are remembered when issued, so a login's
// token is cached on its first use.
//
// It is a fixed table of 64-bit fingerprints indexed by other bits of the
// token's SHA-256: no allocation, no lock. A slot overwritten by another
// token only delays an admission; a fingerprint collision only admits a
// token one sighting early. Neither can let a token through: the
// doorkeeper decides what is cached, never what is valid (the token was
// fully verified before it asks).
type doorkeeper struct {
	slots []atomic.Uint64
	mask  uint64
}

// newDoorkeeper sizes the table to the power of two at or above n (at
// least 1024 slots, 8 bytes each).
func newDoorkeeper(n int) *doorkeeper {
	size := uint64(1024)
	if n > 1024 {
		size = 1 << bits.Len64(uint64(n-1))
	}
	return &doorkeeper{slots: make([]atomic.Uint64, size), mask: size - 1}
}

// split returns h's slot and fingerprint (never 0, the empty slot).
func (d *doorkeeper) split(h tokenHash) (slot uint64, fp uint64) {
	return binary.LittleEndian.Uint64(h[8:16]) & d.mask, binary.LittleEndian.Uint64(h[0:8]) | 1
}

// admit reports whether h was seen before (cache it now); otherwise it
// remembers h and reports false.
func (d *doorkeeper) admit(h tokenHash) bool {
	slot, fp := d.split(h)
	if d.slots[slot].Load() == fp {
		return true
	}
	d.slots[slot].Store(fp)
	return false
}

// remember marks h as seen, so its first verification is cached.
func (d *doorkeeper) remember(h tokenHash) {
	slot, fp := d.split(h)
	d.slots[slot].Store(fp)
}
