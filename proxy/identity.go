package proxy

// headerName is a header tokengate recognises in every spelling (the
// identity and groups headers it strips, the method override headers it
// judges) in the two forms the hot path needs, computed once.
type headerName struct {
	wire       string // the key we set, exactly as configured: legacy apps may match it byte for byte
	normalized string // lower case, '-' for '_': what every spelling reduces to
}

func newHeaderName(name string) headerName {
	return headerName{
		wire:       name,
		normalized: normalizeHeaderName(name),
	}
}

// normalizeHeaderName lower-cases name and maps '_' to '-': many servers
// (CGI, some frameworks) read X_Auth_UserId as X-Auth-UserId, so a client
// must not be able to smuggle either spelling to the upstream.
func normalizeHeaderName(name string) string {
	b := []byte(name)
	for i, c := range b {
		b[i] = normalizeHeaderByte(c)
	}
	return string(b)
}

func normalizeHeaderByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_':
		return '-'
	}
	return c
}

// configured reports whether a header name was given: the groups header
// may be off.
func (h headerName) configured() bool { return h.wire != "" }

// matches reports whether key names the identity header in any spelling,
// without allocating.
func (h headerName) matches(key string) bool {
	if len(key) != len(h.normalized) {
		return false
	}
	for i := 0; i < len(key); i++ {
		if normalizeHeaderByte(key[i]) != h.normalized[i] {
			return false
		}
	}
	return true
}
