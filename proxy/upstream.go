package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
)

// NewTransport returns the upstream Transport tokengate uses: a clone of
// http.DefaultTransport tuned for a sidecar talking HTTP/1.1 to one app over
// loopback. A bare ReverseProxy tuned "the same way" for comparison uses it
// too.
func NewTransport(upstreamTimeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// An HTTP_PROXY in the environment must not reroute the traffic to the app.
	t.Proxy = nil
	// One upstream: let the whole idle pool serve it, so bursts reuse
	// connections instead of dialing (and leaving TIME_WAITs) per request.
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 1024
	t.IdleConnTimeout = 90 * time.Second
	t.ResponseHeaderTimeout = upstreamTimeout
	// The app speaks HTTP/1.1; negotiating h2 buys nothing on loopback.
	t.ForceAttemptHTTP2 = false
	// Pass the client's Accept-Encoding through untouched instead of asking
	// for gzip on its behalf and decompressing here.
	t.DisableCompression = true
	return t
}

const copyBufferSize = 32 << 10

// bufferPool hands ReverseProxy 32 KiB copy buffers. It pools array
// pointers, not slices, so Put does not allocate a slice header.
type bufferPool struct{ pool sync.Pool }

// NewBufferPool returns the pool of 32 KiB copy buffers tokengate's
// ReverseProxy uses (ReverseProxy.BufferPool).
func NewBufferPool() httputil.BufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

func (p *bufferPool) Get() []byte { return p.pool.Get().(*[copyBufferSize]byte)[:] }

func (p *bufferPool) Put(b []byte) {
	if cap(b) < copyBufferSize {
		return
	}
	p.pool.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
}

// newReverseProxy builds the ReverseProxy to the upstream.
func (h *handler) newReverseProxy(timeout time.Duration) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:    h.rewrite,
		Transport:  NewTransport(timeout),
		BufferPool: NewBufferPool(),
		// FlushInterval stays 0: ReverseProxy already flushes every write of
		// text/event-stream and unknown-length (chunked) responses, which is
		// what streaming needs; a negative value would add a timer and a
		// flush per write to every ordinary response.
		FlushInterval:  0,
		ModifyResponse: dropUpstreamRequestID,
		ErrorHandler:   h.upstreamError,
		ErrorLog:       slog.NewLogLogger(h.logger.Handler(), slog.LevelWarn),
	}
}

// rewrite runs after ReverseProxy removed the hop-by-hop headers (those a
// client names in Connection too) and the client's X-Forwarded-*, so the
// identity header set here always reaches the upstream. Out is a clone of
// In, which stripIdentity already cleared of every client spelling of the
// identity header (TestIdentitySpoofing holds both guarantees).
func (h *handler) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(h.upstream)
	dropNonWebSocketUpgrade(pr.Out.Header)
	h.stripBrowserCredentials(pr)
	if !h.forwardAuthz {
		stripBearer(pr.Out.Header)
	}
	if st := stateFrom(pr.In.Context()); st != nil && st.authed {
		st.userVal[0] = st.claims.Subject
		// A non-canonical key on purpose: the Transport writes map keys
		// verbatim, so the app sees the configured spelling. Every other
		// spelling was stripped before, so this is the only copy.
		pr.Out.Header[h.identity.wire] = st.userVal[:]
		if h.groupsOn && len(st.groups) > 0 {
			st.grpVal[0] = groupsValue(st.groups)
			pr.Out.Header[h.groups.wire] = st.grpVal[:]
		}
	}
	h.setForwarded(pr)
}

// stripBearer removes every Authorization header of the Bearer scheme (any
// case): the token works against every app behind tokengate, so the app
// (and its logs) must not hold it. Other schemes (an app's own Basic auth
// on a public path) pass; on a private path only a Bearer one gets here.
func stripBearer(hdr http.Header) {
	vals := hdr["Authorization"]
	if len(vals) == 0 {
		return
	}
	kept := vals[:0:0]
	for _, v := range vals {
		if !isBearer(v) {
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		delete(hdr, "Authorization")
		return
	}
	hdr["Authorization"] = kept
}

// isBearer reports whether an Authorization value names the Bearer scheme.
func isBearer(v string) bool {
	v = strings.TrimLeft(v, " \t")
	const scheme = "bearer"
	return len(v) >= len(scheme) && strings.EqualFold(v[:len(scheme)], scheme) &&
		(len(v) == len(scheme) || v[len(scheme)] == ' ' || v[len(scheme)] == '\t')
}

// setForwarded sets X-Forwarded-For/Host/Proto. A client's own values are
// dropped (ReverseProxy removed them from Out) unless the direct peer is a
// trusted proxy: then its chain is kept and the peer appended.
func (h *handler) setForwarded(pr *httputil.ProxyRequest) {
	if len(h.trusted) == 0 || !h.isTrusted(peerAddr(pr.In.RemoteAddr)) {
		pr.SetXForwarded()
		return
	}
	in := pr.In.Header
	if prior := in["X-Forwarded-For"]; len(prior) > 0 {
		pr.Out.Header["X-Forwarded-For"] = prior // SetXForwarded appends the peer to it
	}
	pr.SetXForwarded()
	// The trusted proxy saw the original host and scheme; we did not.
	for _, k := range []string{"X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
		if v := in[k]; len(v) > 0 {
			pr.Out.Header[k] = append([]string(nil), v...)
		}
	}
}

// dropUpstreamRequestID keeps the X-Request-Id tokengate already set on the
// response: the upstream received the same id and often echoes it.
func dropUpstreamRequestID(res *http.Response) error {
	delete(res.Header, "X-Request-Id")
	return nil
}

// upstreamError answers when the upstream gave no response: 504 on a
// timeout, 502 otherwise. A client that went away gets nothing and counts
// as no upstream error (logged as 499, like nginx).
func (h *handler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	st := stateFrom(ctx)
	if ctx.Err() != nil {
		if st != nil {
			st.clientGone = true
		}
		return
	}
	// url.Error carries the upstream URL with its query string, which may
	// hold secrets: log the operation and the cause only.
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	kind, answer := upstreamUnavailable, errUpstreamDown
	if isTimeout(err) {
		kind, answer = upstreamTimeout, errUpstreamTimeout
	}
	h.metrics.upstream[kind].Inc()
	h.logger.LogAttrs(ctx, slog.LevelWarn, "upstream error",
		slog.String("request_id", RequestIDFromContext(ctx)),
		slog.String("kind", kind),
		slog.String("error", cause.Error()))
	writeError(w, answer)
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// peerAddr parses the direct peer's address (the zero Addr if it cannot).
func peerAddr(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (h *handler) isTrusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
