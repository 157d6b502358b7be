package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"tokengate/authn"
)

//go:embed templates/*.html templates/*.css
var pageFiles embed.FS

// The pages are parsed once; the CSS is inlined in a <style> element that
// the Content-Security-Policy allows by its hash, so the pages need no
// second request, no inline script and no 'unsafe-inline'.
var (
	pageTemplates = template.Must(template.ParseFS(pageFiles, "templates/*.html"))
	pageCSS       = mustRead(pageFiles, "templates/page.css")
	pageCSP       = pageContentSecurityPolicy(pageCSS)
)

func mustRead(fsys embed.FS, name string) string {
	b, err := fsys.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// pageContentSecurityPolicy allows nothing but the one inline stylesheet
// and form posts to this origin: no script at all, no framing, no <base>.
// formOrigins are other origins a form may end up at (the OpenID Connect
// provider, where signing out continues).
func pageContentSecurityPolicy(css string, formOrigins ...string) string {
	sum := sha256.Sum256([]byte(css))
	action := "'self'"
	for _, o := range formOrigins {
		action += " " + o
	}
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"form-action " + action + "; frame-ancestors 'none'; base-uri 'none'"
}

// pageData is what the templates show. Every field is escaped by
// html/template for its context; CSS is the embedded file, trusted.
type pageData struct {
	Title    string
	CSS      template.CSS
	Action   string
	CSRF     string
	RD       string
	Username string
	Message  string
	Notice   string // news that is not an error (signed out)
	// The OpenID Connect provider's button: its label and link ("" = none),
	// and whether the password form is shown beside it.
	Provider     string
	ProviderURL  string
	PasswordForm bool
}

// Messages on the pages. The sign-in failure never says which of the two
// fields was wrong.
const (
	msgBadCredentials = "The username or password is not correct."
	msgMissingFields  = "Enter your username and password."
	msgBadUsername    = "The username contains characters no account can have."
	msgFormExpired    = "This form has expired or did not come from this site. Please try again."
	msgCrossSite      = "This form did not come from this site."
	msgUnavailable    = "Signing in is unavailable right now. Please try again in a moment."
	msgSignOutFailed  = "Signing out could not be recorded right now. Please try again in a moment."
)

// After a sign-out the browser lands on the sign-in page with
// signedOutParam naming what ended, and the page says so.
const (
	signedOutParam      = "signed_out"
	signedOutThis       = "this"
	signedOutEverywhere = "everywhere"
	noticeSignedOut     = "You have signed out."
	noticeEverywhere    = "You have signed out everywhere: every session of yours, in every browser and app, has ended."
)

// renderPage writes a page with the headers every page carries.
func (h *handler) renderPage(w http.ResponseWriter, name string, status int, d pageData) {
	d.Title = h.browser.title
	d.CSS = template.CSS(pageCSS)
	var buf bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&buf, name, d); err != nil {
		// Only a broken template gets here; the tests render each one.
		h.logger.Error("rendering a page failed", "page", name, "error", err)
		writeError(w, errInternal)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(buf.Len()))
	hdr.Set("Content-Security-Policy", h.pageCSP)
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	noStore(w)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

const pageMethods = "GET, HEAD, POST"

// serveSignIn: GET shows the form, POST signs in.
func (h *handler) serveSignIn(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		q := r.URL.Query()
		rd := h.redirectTarget(q.Get("rd"))
		h.signInPageWith(w, r, http.StatusOK, pageData{RD: rd, Notice: signedOutNotice(q.Get(signedOutParam))})
	case http.MethodPost:
		h.signIn(w, r)
	default:
		writeMethodNotAllowed(w, pageMethods)
	}
}

// signInPage renders the form; rd is already checked.
func (h *handler) signInPage(w http.ResponseWriter, r *http.Request, status int, rd, username, msg string) {
	h.signInPageWith(w, r, status, pageData{RD: rd, Username: username, Message: msg})
}

// signInPageWith renders the form with d's RD, Username, Message, Notice.
func (h *handler) signInPageWith(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	if d.RD == "/" {
		d.RD = "" // the default: keep the form (and the URL) short
	}
	d.Action = h.browser.signIn
	d.PasswordForm = true
	if h.oidc != nil {
		d.Provider, d.PasswordForm = h.oidc.opts.Name, !h.oidc.opts.HidePasswordForm
		d.ProviderURL = h.oidc.signInRoute
		if d.RD != "" {
			d.ProviderURL += "?rd=" + url.QueryEscape(d.RD)
		}
	}
	if d.PasswordForm {
		d.CSRF = h.browser.ensureCSRF(w, r, csrfSignIn)
	}
	h.renderPage(w, "sign_in.html", status, d)
}

// signedOutNotice is the sign-in page's word after a sign-out; anything
// else in the parameter shows nothing (fixed texts only: nothing from the
// URL reaches the page).
func signedOutNotice(v string) string {
	switch v {
	case signedOutThis:
		return noticeSignedOut
	case signedOutEverywhere:
		return noticeEverywhere
	}
	return ""
}

func (h *handler) signIn(w http.ResponseWriter, r *http.Request) {
	if h.oidc != nil && h.oidc.opts.HidePasswordForm {
		h.countLogin(r, loginMalformed, "")
		h.signInPage(w, r, http.StatusForbidden, "", "", msgPasswordOff)
		return
	}
	if h.browser.crossOrigin.Check(r) != nil {
		h.countLogin(r, loginMalformed, "")
		h.signInPage(w, r, http.StatusForbidden, "", "", msgCrossSite)
		return
	}
	form, fail := h.readForm(w, r)
	if fail != nil {
		h.countLogin(r, loginMalformed, "")
		if fail.Status == http.StatusRequestEntityTooLarge {
			writeError(w, *fail)
			return
		}
		h.signInPage(w, r, http.StatusBadRequest, "", "", msgMissingFields)
		return
	}
	rd := h.redirectTarget(form["rd"])
	// Before the password: a forged form must not even count as an attempt.
	if !h.browser.checkCSRF(r, csrfSignIn, form[csrfField]) {
		h.countLogin(r, loginMalformed, "")
		h.signInPage(w, r, http.StatusForbidden, rd, "", msgFormExpired)
		return
	}
	username, password := form["username"], form["password"]
	stateFrom(r.Context()).login = username // for the access line
	if username == "" || password == "" {
		h.countLogin(r, loginMalformed, "")
		h.signInPage(w, r, http.StatusBadRequest, rd, username, msgMissingFields)
		return
	}
	user, err := h.auth.Authenticate(r.Context(), username, password, h.clientAddr(r))
	if err != nil {
		h.signInFailed(w, r, err, rd, username)
		return
	}
	subject := user.ID
	if subject == "" {
		subject = user.Username
	}
	token, claims, err := h.tokens.IssueSession(authn.Session{Subject: subject, Username: user.Username})
	if err != nil {
		h.countLogin(r, loginError, "")
		h.logError(r.Context(), "sign-in: issuing a token failed", err)
		h.signInPage(w, r, http.StatusInternalServerError, rd, username, msgUnavailable)
		return
	}
	h.countLogin(r, loginSuccess, "")
	stateFrom(r.Context()).setClaims(claims) // the access log names the user
	h.browser.clearHostOnlyCookie(w)
	http.SetCookie(w, h.browser.sessionCookieFor(token, h.now(), claims.ExpiresAt))
	noStore(w)
	w.Header().Set("Location", rd)
	w.WriteHeader(http.StatusSeeOther)
}

// signInFailed answers a refused sign-in like loginFailed answers a
// refused login (same metrics, same Retry-After), as a page.
func (h *handler) signInFailed(w http.ResponseWriter, r *http.Request, err error, rd, username string) {
	switch {
	case errors.Is(err, authn.ErrMalformedLoginName):
		// A client error refused before any lookup, never a store error;
		// the name is not echoed (it holds control characters).
		h.countLogin(r, loginMalformed, "")
		h.signInPage(w, r, http.StatusBadRequest, rd, "", msgBadUsername)
	case errors.Is(err, authn.ErrInvalidCredentials):
		h.countLogin(r, loginInvalidCredentials, "")
		h.signInPage(w, r, http.StatusUnauthorized, rd, username, msgBadCredentials)
	case errors.Is(err, authn.ErrThrottled):
		h.countLogin(r, loginThrottled, "")
		secs := retryAfterSeconds(err)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		h.signInPage(w, r, http.StatusTooManyRequests, rd, username,
			"Too many failed attempts. Please wait "+strconv.FormatInt(secs, 10)+" seconds and try again.")
	default:
		h.countLogin(r, loginError, "")
		h.logError(r.Context(), "sign-in: user store failed", err)
		h.signInPage(w, r, http.StatusServiceUnavailable, rd, username, msgUnavailable)
	}
}

// retryAfterSeconds is a throttled attempt's Retry-After: at least 1 s.
func retryAfterSeconds(err error) int64 {
	retry := time.Second
	if te, ok := errors.AsType[*authn.ThrottledError](err); ok && te.RetryAfter > retry {
		retry = te.RetryAfter
	}
	return int64(math.Ceil(retry.Seconds()))
}

// redirectTarget is where a signed-in browser goes: rd when it is a safe
// relative path, or an absolute URL to an allowed host (safeRedirect),
// other than the sign-in and sign-out pages themselves, else "/".
func (h *handler) redirectTarget(rd string) string {
	target, ok := safeRedirect(rd, h.browser.rdHosts)
	if !ok {
		return "/"
	}
	if u, err := url.Parse(target); err == nil && (u.Path == h.browser.signIn || u.Path == h.browser.signOut) {
		return "/"
	}
	return target
}

// readForm reads an application/x-www-form-urlencoded body of at most
// maxBody bytes. A repeated field is malformed: which one would count?
func (h *handler) readForm(w http.ResponseWriter, r *http.Request) (map[string]string, *apiError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, &errMalformedRequest
	}
	body, fail := h.readBody(w, r)
	if fail != nil {
		return nil, fail
	}
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, &errMalformedRequest
	}
	form := make(map[string]string, len(vals))
	for k, v := range vals {
		if len(v) != 1 {
			return nil, &errMalformedRequest
		}
		form[k] = v[0]
	}
	return form, nil
}

// serveSignOut: GET shows the two buttons, POST signs out.
func (h *handler) serveSignOut(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.signOutPage(w, r, http.StatusOK, "")
	case http.MethodPost:
		h.signOut(w, r)
	default:
		writeMethodNotAllowed(w, pageMethods)
	}
}

func (h *handler) signOutPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	var username string
	if c, ok := h.cookieClaims(r); ok {
		username = c.Username
		if username == "" {
			username = c.Subject
		}
	}
	h.renderPage(w, "sign_out.html", status, pageData{
		Action:   h.browser.signOut,
		CSRF:     h.browser.ensureCSRF(w, r, csrfSignOut),
		Username: username,
		Message:  msg,
	})
}

// cookieClaims verifies the session cookie (counted like any token).
func (h *handler) cookieClaims(r *http.Request) (authn.Claims, bool) {
	token, ok := h.browser.sessionCookie(r)
	if !ok {
		return authn.Claims{}, false
	}
	out := h.judge(r, token, authOutcome{}, false)
	if !out.allowed() {
		return authn.Claims{}, false
	}
	stateFrom(r.Context()).setClaims(out.claims)
	return out.claims, true
}

// signOut revokes the cookie's token ("this") or every token of its user
// ("everywhere") with the code logout and logout_all use, clears the
// cookie and sends the browser to the sign-in page. With no valid cookie
// there is nothing to revoke: the cookie is cleared all the same.
func (h *handler) signOut(w http.ResponseWriter, r *http.Request) {
	if h.browser.crossOrigin.Check(r) != nil {
		h.signOutPage(w, r, http.StatusForbidden, msgCrossSite)
		return
	}
	form, fail := h.readForm(w, r)
	if fail != nil {
		writeError(w, *fail)
		return
	}
	if !h.browser.checkCSRF(r, csrfSignOut, form[csrfField]) {
		h.signOutPage(w, r, http.StatusForbidden, msgFormExpired)
		return
	}
	var revoke func(context.Context, authn.Claims) error
	switch form["scope"] {
	case "", "this":
		revoke = h.revokeToken
	case "everywhere":
		revoke = h.revokeUser
	default:
		writeError(w, errMalformedRequest)
		return
	}
	var (
		c        authn.Claims // the signed-out session, for the provider's logout
		signedIn bool
	)
	// What the sign-in page will say: "everywhere" only when every token
	// of the user was revoked; without a valid cookie nothing was, and
	// only this browser's cookie is cleared.
	ended := signedOutThis
	if token, ok := h.browser.sessionCookie(r); ok {
		out := h.judge(r, token, authOutcome{}, false)
		switch {
		case out.allowed():
			c, signedIn = out.claims, true
			stateFrom(r.Context()).setClaims(out.claims)
			if err := revoke(r.Context(), out.claims); err != nil {
				// The cookie stays: the user can retry, and is not told they
				// are signed out while the token still works.
				h.logError(r.Context(), "sign-out: revoking failed", err)
				h.signOutPage(w, r, http.StatusServiceUnavailable, msgSignOutFailed)
				return
			}
			if form["scope"] == "everywhere" {
				ended = signedOutEverywhere
			}
		case out.decision == decisionError:
			// The revocation store could not even say whether the token
			// is alive: nothing can be revoked now, and clearing the
			// cookie would tell the person they are signed out while the
			// token (perhaps copied elsewhere) still works.
			h.signOutPage(w, r, http.StatusServiceUnavailable, msgSignOutFailed)
			return
		}
	}
	h.browser.clearHostOnlyCookie(w)
	h.browser.clearSessionCookie(w)
	noStore(w)
	w.Header().Set("Location", h.afterSignOut(w, r, c, signedIn, h.browser.signIn+"?"+signedOutParam+"="+ended))
	w.WriteHeader(http.StatusSeeOther)
}
