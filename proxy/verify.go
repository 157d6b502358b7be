package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"tokengate/access"
)

// Forward auth: an ingress (nginx auth_request, Caddy forward_auth, Traefik
// ForwardAuth, Envoy ext_authz) asks the verify route whether a request may
// pass and as whom, and forwards it to the app itself. Verify finds the
// credential and checks it exactly as a proxied request (credential, then
// checkToken); only the request it judges is the ingress's original one.

// originStyle says which headers described the original request: nginx's
// auth_request answers only 2xx, 401 and 403 (its config turns a browser's
// 401 into the redirect), the others pass a 302 through to the client.
type originStyle uint8

const (
	originNone      originStyle = iota
	originNginx                 // X-Original-URI, X-Original-Method
	originForwarded             // X-Forwarded-Uri, -Method, -Host, -Proto
	originPath                  // Envoy ext_authz: the verify route + the original path and query
)

// signInHeader carries the sign-in URL on a verify 401 for a browser
// navigation, for an ingress that cannot pass a 302 (the nginx config
// answers 302 to it).
const signInHeader = "X-Tokengate-Sign-In"

// errorHeader and errorMessageHeader carry a refusal's code and message
// (the JSON body's "error" and "message") in an nginx-style answer: nginx's
// auth_request drops the subrequest's body (and every header but
// WWW-Authenticate), so the shipped config copies these two with
// auth_request_set into the answer it writes itself.
const (
	errorHeader        = "X-Tokengate-Error"
	errorMessageHeader = "X-Tokengate-Error-Message"
)

// methodUnknown stands for an original method the ingress named in a way
// verify cannot read: no real method, and not a safe one.
const methodUnknown = "UNKNOWN"

// envoyHeadersToRemove is the header Envoy's ext_authz HTTP service reads
// on a 200: request headers (comma-separated names) it removes before
// forwarding to the app.
const envoyHeadersToRemove = "X-Envoy-Auth-Headers-To-Remove"

// original is the request an ingress asks about.
type original struct {
	req    *http.Request // a shallow copy of the verify request with the original method, URL and host
	known  bool          // the URL came from a trusted proxy; else the path counts as private
	origin string        // "https://host" when a trusted proxy named host and scheme
	style  originStyle
	// conflict: a trusted peer sent both header families (X-Original-* and
	// X-Forwarded-Uri/-Method) and they name different requests. Which
	// one did the ingress write, and which did it pass through from the
	// client? Verify refuses to guess (400).
	conflict bool
}

var errOriginalConflict = apiError{http.StatusBadRequest, "malformed_request",
	"the original request is named twice, differently (X-Original-URI/-Method and X-Forwarded-Uri/-Method)"}

// familiesDisagree reports whether hdr carries both families of
// original-request headers and they differ in the URI or the method (one
// family naming what the other does not counts as differing).
func familiesDisagree(hdr http.Header) bool {
	nginx := hdr["X-Original-Uri"] != nil || hdr["X-Original-Method"] != nil
	fwd := hdr["X-Forwarded-Uri"] != nil || hdr["X-Forwarded-Method"] != nil
	if !nginx || !fwd {
		return false
	}
	return !slices.Equal(hdr["X-Original-Uri"], hdr["X-Forwarded-Uri"]) ||
		!slices.Equal(hdr["X-Original-Method"], hdr["X-Forwarded-Method"])
}

// originalRequest reads the original request from the ingress's headers,
// honoured only when the direct peer is in trusted_proxies. Otherwise (or
// when they are missing, repeated or unparsable) the original URL is
// unknown, and verify judges the request as one for a private path: a
// client-sent X-Original-URI or X-Forwarded-Uri naming a public path must
// never let a private one through. Likewise the original method: unknown
// unless a trusted ingress names it, and an unknown method is unsafe.
func (h *handler) originalRequest(r *http.Request) original {
	o := original{style: originNone}
	hdr := r.Header
	uriKey, methodKey := "", ""
	switch {
	case hdr["X-Original-Uri"] != nil || hdr["X-Original-Method"] != nil:
		o.style, uriKey, methodKey = originNginx, "X-Original-Uri", "X-Original-Method"
	case hdr["X-Forwarded-Uri"] != nil || hdr["X-Forwarded-Method"] != nil:
		o.style, uriKey, methodKey = originForwarded, "X-Forwarded-Uri", "X-Forwarded-Method"
	}
	if r.URL.Path != h.verifyRoute {
		o.style = originPath // under the verify route: Envoy appends the original request target
	}
	req := *r // shallow: the checks read the method, URL, Host and headers
	req.URL = &url.URL{}
	// Until a trusted ingress names it, the original method is unknown. It
	// is judged as an unsafe one (the cross-site check applies, no sign-in
	// redirect), never as verify's own method, which is a GET behind most
	// ingresses whatever the original was.
	req.Method = methodUnknown
	o.req = &req
	if o.style == originNone || !h.isTrusted(peerAddr(r.RemoteAddr)) {
		return o
	}
	if o.style == originPath {
		// Envoy sends the original method, Host and X-Forwarded-Proto as they are.
		req.Method = r.Method
		u, err := url.ParseRequestURI(strings.TrimPrefix(r.RequestURI, h.verifyRoute))
		if err != nil || !strings.HasPrefix(u.Path, "/") {
			return o
		}
		req.URL, o.known = u, true
		if proto, ok := single(hdr, "X-Forwarded-Proto"); ok && (proto == "http" || proto == "https") && validRedirectAuthority(r.Host) {
			o.origin = proto + "://" + r.Host
		}
		return o
	}
	if familiesDisagree(hdr) {
		o.conflict = true
		return o
	}
	if m, ok := single(hdr, methodKey); ok && validHeaderName(m) {
		req.Method = m // else absent, repeated, empty or malformed: unknown
	}
	uri, ok := single(hdr, uriKey)
	if !ok || !strings.HasPrefix(uri, "/") || strings.HasPrefix(uri, "//") {
		return o
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return o
	}
	req.URL, o.known = u, true
	host, okHost := single(hdr, "X-Forwarded-Host")
	proto, okProto := single(hdr, "X-Forwarded-Proto")
	if okHost && validRedirectAuthority(host) {
		req.Host = host
		if okProto && (proto == "http" || proto == "https") {
			o.origin = proto + "://" + host
		}
	}
	return o
}

// single returns the one value of key; absent, empty or repeated is not ok.
func single(hdr http.Header, key string) (string, bool) {
	vals := hdr[key]
	if len(vals) != 1 || vals[0] == "" {
		return "", false
	}
	return vals[0], true
}

// validRedirectAuthority accepts host or host:port as permits does.
func validRedirectAuthority(a string) bool {
	return redirectHosts{strings.ToLower(strings.Split(a, ":")[0])}.permits("http://" + a)
}

// serveVerify answers an ingress's auth subrequest: 200 with the identity
// header (and a renewed session cookie past half its life) for a valid,
// unrevoked credential; 200 without it when the original path is public
// and no valid credential came; otherwise 401 JSON
// with WWW-Authenticate, or for a browser navigation the way to the
// sign-in page and back. Never cached.
func (h *handler) serveVerify(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	st := stateFrom(r.Context())
	o := h.originalRequest(r)
	if o.conflict {
		h.countDecision(r, decisionMalformed)
		writeError(w, errOriginalConflict)
		return
	}
	orig := o.req
	if st.tooManyOverrides {
		writeError(w, errTooManyMethods)
		return
	}
	// The same rules as the sidecar, for the original request. An unknown
	// original URL (no trusted ingress named it), or one with dot segments,
	// is judged as a private path when there are no rules; with rules it
	// cannot be judged, and a valid credential gets 403.
	var req access.Request
	unknown := access.Decision{Outcome: access.Unauthenticated, Name: access.NameDefault, Index: -1}
	anon := unknown
	if o.known {
		h.accessRequest(&req, r, orig)
		if anon = st.access.rules.Decide(&req, access.Identity{}); anon.Outcome == access.BadPath {
			o.known, anon = false, unknown
		}
	}
	if anon.Outcome == access.Forbidden { // a deny rule
		h.decided(r, st, anon)
		h.countDecision(r, decisionForbidden)
		h.writeForbidden(w, orig, nil)
		return
	}
	public := anon.Outcome == access.Allow

	token, src, out := h.credential(orig)
	if src == sourceNone && public {
		h.decided(r, st, anon)
		h.writeAppCookies(w, r)
		w.WriteHeader(http.StatusOK) // anonymous on a public path
		return
	}
	out = h.check(r, token, out, false)
	d := anon
	if out.allowed() && !public {
		switch {
		case o.known:
			d = st.access.rules.Decide(&req, identityOf(out))
		case st.access.rules.Configured():
			d = access.Decision{Outcome: access.Forbidden, Name: access.NameDefault, Index: -1}
		default:
			d = access.Decision{Outcome: access.Allow, Name: access.NameDefault, Index: -1}
		}
	}
	h.decided(r, st, d)
	if out.allowed() && d.Outcome != access.Allow {
		h.countDecision(r, decisionForbidden)
		h.writeForbidden(w, orig, &out.claims)
		return
	}
	h.countDecision(r, out.decision)

	switch {
	case out.allowed() && (src != sourceCookie || h.sameOrigin(orig)):
		st.setIdentity(out.claims, out.groups)
		w.Header()[h.identity.wire] = []string{out.claims.Subject}
		if h.groupsOn {
			// Always on an allowing answer, even empty: an ingress that
			// copies it then overwrites whatever the client sent.
			w.Header()[h.groups.wire] = []string{groupsValue(out.groups)}
		}
		h.writeAppCookies(w, r)
		// A session cookie past half its life: the fresh one is for the
		// ingress to copy to the app's response (nginx add_header, Traefik
		// v3 addAuthCookiesToResponse, Envoy
		// allowed_client_headers_on_success, ingress-nginx by itself). Not
		// on public paths, as the sidecar: their responses are the ones a
		// shared cache keeps, and here no-store cannot be added to them.
		if src == sourceCookie && !public {
			if fresh := h.renewedSessionCookie(r, out.claims); fresh != nil {
				http.SetCookie(w, fresh)
			}
		}
		w.WriteHeader(http.StatusOK)
	case public:
		h.writeAppCookies(w, r)
		w.WriteHeader(http.StatusOK) // a bad credential on a public path: anonymous
	case out.allowed(): // cookie, cross-site, unsafe method
		o.nameError(w, errCrossOrigin)
		writeError(w, errCrossOrigin)
	default:
		if src == sourceCookie && out.decision != decisionError {
			h.browser.clearSessionCookie(w) // expired, revoked or invalid
		}
		if h.browser.enabled && out.err.Status == http.StatusUnauthorized && wantsHTML(orig) {
			var back *url.URL
			if o.known {
				back = orig.URL
			}
			location := h.signInLocation(back, o.origin)
			if o.style != originNginx {
				w.Header().Set("Location", location)
				w.WriteHeader(http.StatusFound)
				return
			}
			w.Header().Set(signInHeader, location)
		}
		o.nameError(w, out.err)
		writeAuthError(w, out)
	}
}

// nameError puts a refusal's code and message in headers for nginx, which
// passes only headers of the auth answer on (errorHeader). Other ingresses
// pass the JSON body itself.
func (o original) nameError(w http.ResponseWriter, e apiError) {
	if o.style == originNginx {
		w.Header()[errorHeader] = []string{e.Code}
		w.Header()[errorMessageHeader] = []string{e.Message}
	}
}

// writeAppCookies puts on an allowing answer the Cookie header the app
// should receive: the request's cookies without tokengate's session and
// CSRF cookies (appCookies, as the sidecar forwards them), joined into one
// header. An ingress that copies Cookie from the answer overwrites the
// request's with it (Traefik authResponseHeaders, ingress-nginx
// auth-response-headers, the nginx template, Envoy
// allowed_upstream_headers). Traefik and nginx also delete the request's
// Cookie when the answer has none, so the header is echoed even when
// nothing was removed; when nothing is left, the answer has no Cookie, and
// X-Envoy-Auth-Headers-To-Remove tells Envoy, which only overwrites, to
// remove it. A request without Cookie gets neither. Refusals never call it.
func (h *handler) writeAppCookies(w http.ResponseWriter, r *http.Request) {
	vals := r.Header["Cookie"]
	if len(vals) == 0 {
		return
	}
	if h.browser.enabled {
		vals = h.browser.appCookies(vals)
	}
	switch len(vals) {
	case 0:
		w.Header()[envoyHeadersToRemove] = []string{"cookie"}
	case 1:
		w.Header()["Cookie"] = vals // shared with the request, which nothing modifies
	default:
		// One line, as RFC 6265 has browsers send it: nginx before 1.23 reads
		// only the first of several into $upstream_http_cookie.
		w.Header()["Cookie"] = []string{strings.Join(vals, "; ")}
	}
}
