package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/oauth2"

	"tokengate/authn"
)

// Records keep small values every replica sharing the revocation store
// reads (revocation.Records): here, the OpenID Connect users' identities.
type Records interface {
	PutRecord(ctx context.Context, key string, value []byte, until time.Time) error
	AddRecord(ctx context.Context, key string, value []byte, until time.Time) (bool, error)
	GetRecord(ctx context.Context, key string) ([]byte, bool, error)
}

// An OpenID Connect user's identity lives in the revocation store (the
// state every replica already shares), under oidcUserKey(id): the name,
// the groups and the refresh token (sealed: the store never holds it in
// the clear) from the last sign-in or refresh. Any replica reads it; when
// it is older than half the refresh interval, the replica that wins a
// short lock (AddRecord) asks the provider again with the refresh token
// and writes the answer back. authn.Identities keeps each replica's copy
// (hits cost no I/O), so a group change or the provider ending the grant
// reaches every replica within the refresh interval. The provider refusing
// the refresh token (the user was removed or signed out there, or the
// grant revoked) ends the user's OIDC sessions: their tokens are refused.
// Without a refresh token (the provider gave none: ask for offline_access
// where needed) the identity stays as of the last sign-in.
type oidcUsers struct {
	c        *oidcClient
	records  Records
	refresh  time.Duration // re-read from the provider when older than this
	maxStale time.Duration // past refresh + this, an unconfirmed identity is refused
	life     time.Duration // a record outlives its last sign-in or refresh by this
	now      func() time.Time
	log      *slog.Logger
}

type oidcUserRecord struct {
	Username string   `json:"u"`
	Groups   []string `json:"g,omitempty"`
	Refresh  string   `json:"r,omitempty"` // the refresh token, sealed
	Checked  int64    `json:"c"`           // unix ns: the last sign-in or refresh
	Ended    string   `json:"e,omitempty"` // why the provider ended the user's sessions
}

func oidcUserKey(id string) string { return "oidc-user:" + id }
func oidcRefreshLock(id string, checked int64) string {
	return "oidc-refresh-lock:" + strconv.FormatInt(checked, 36) + ":" + id
}

const sealRefreshToken = "oidc refresh token"

var _ authn.UserByIDStore = (*oidcUsers)(nil)

// signedIn records the identity of a fresh sign-in, replacing any other.
func (u *oidcUsers) signedIn(ctx context.Context, s authn.Session, groups []string, refreshToken string) error {
	now := u.now()
	rec := oidcUserRecord{Username: s.Username, Groups: groups, Checked: now.UnixNano()}
	if refreshToken != "" {
		sealed, err := seal(u.c.seal, sealRefreshToken, refreshToken, now.Add(u.life))
		if err != nil {
			return err
		}
		rec.Refresh = sealed
	}
	return u.put(ctx, s.Subject, rec, now)
}

func (u *oidcUsers) put(ctx context.Context, id string, rec oidcUserRecord, now time.Time) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return u.records.PutRecord(ctx, oidcUserKey(id), b, now.Add(u.life))
}

// LookupUserByID answers authn.Identities: the user as the provider last
// said, refreshed first when that is older than the refresh interval.
func (u *oidcUsers) LookupUserByID(ctx context.Context, id string) (authn.User, error) {
	b, found, err := u.records.GetRecord(ctx, oidcUserKey(id))
	if err != nil {
		return authn.User{}, fmt.Errorf("%w: %w", authn.ErrUsersUnavailable, err)
	}
	var rec oidcUserRecord
	if !found || json.Unmarshal(b, &rec) != nil || rec.Ended != "" {
		return authn.User{}, authn.ErrUserNotFound
	}
	now := u.now()
	if rec.Refresh == "" || now.Sub(time.Unix(0, rec.Checked)) < u.refresh {
		return rec.user(id), nil
	}
	// One replica refreshes this version of the record; the others serve
	// it meanwhile.
	first, err := u.records.AddRecord(ctx, oidcRefreshLock(id, rec.Checked), []byte{1}, now.Add(2*u.c.opts.Timeout))
	if err != nil {
		return authn.User{}, fmt.Errorf("%w: %w", authn.ErrUsersUnavailable, err)
	}
	if !first {
		if age := now.Sub(time.Unix(0, rec.Checked)); age > u.refresh+u.maxStale {
			// Another replica holds the lock, but the provider has not
			// answered anyone for this long: no more guessing.
			return authn.User{}, fmt.Errorf("%w: the provider has not confirmed this user for %s", authn.ErrUsersUnavailable, age.Round(time.Second))
		}
		return rec.user(id), nil
	}
	return u.refreshUser(ctx, id, rec, now)
}

func (rec oidcUserRecord) user(id string) authn.User {
	return authn.User{ID: id, Username: rec.Username, Groups: rec.Groups}
}

// refreshUser asks the provider who id is now, with the refresh token.
func (u *oidcUsers) refreshUser(ctx context.Context, id string, rec oidcUserRecord, now time.Time) (authn.User, error) {
	rt, err := unseal[string](u.c.seal, sealRefreshToken, rec.Refresh, now)
	if err != nil {
		return u.end(ctx, id, rec, now, "the stored refresh token expired")
	}
	d, err := u.c.provider(ctx, now)
	if err != nil {
		return authn.User{}, fmt.Errorf("%w: %w", authn.ErrUsersUnavailable, err)
	}
	callCtx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, u.c.opts.HTTPClient), u.c.opts.Timeout)
	defer cancel()
	tok, err := d.config.TokenSource(callCtx, &oauth2.Token{RefreshToken: rt, Expiry: now.Add(-time.Minute)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return u.end(ctx, id, rec, now, "the provider refused the refresh token (user removed, signed out or grant revoked)")
		}
		u.log.LogAttrs(ctx, slog.LevelWarn, "oidc: refreshing a user's identity at the provider failed; serving the last one for now",
			slog.String("user", clip(id, maxClaimBytes)), slog.String("error", err.Error()))
		return authn.User{}, fmt.Errorf("%w: %w", authn.ErrUsersUnavailable, err)
	}
	claims, err := u.freshClaims(callCtx, d, tok)
	if err != nil {
		u.log.LogAttrs(ctx, slog.LevelWarn, "oidc: the provider's refreshed identity could not be read", slog.String("error", err.Error()))
		return authn.User{}, fmt.Errorf("%w: %w", authn.ErrUsersUnavailable, err)
	}
	s, groups, err := u.c.identityFrom(claims)
	switch {
	case errors.Is(err, errOIDCNotAllowed):
		return u.end(ctx, id, rec, now, err.Error())
	case err != nil:
		return authn.User{}, fmt.Errorf("%w: %w", authn.ErrUsersUnavailable, err)
	case s.Subject != id:
		return u.end(ctx, id, rec, now, "the provider now names another user")
	}
	rec.Username, rec.Groups, rec.Checked = s.Username, groups, now.UnixNano()
	if tok.RefreshToken != "" && tok.RefreshToken != rt { // rotated
		if rec.Refresh, err = seal(u.c.seal, sealRefreshToken, tok.RefreshToken, now.Add(u.life)); err != nil {
			return authn.User{}, err
		}
	}
	if err := u.put(ctx, id, rec, now); err != nil {
		return authn.User{}, fmt.Errorf("%w: %w", authn.ErrUsersUnavailable, err)
	}
	return rec.user(id), nil
}

// freshClaims reads the refreshed identity: the new ID token when the
// provider sent one (verified), else its userinfo endpoint.
func (u *oidcUsers) freshClaims(ctx context.Context, d *discovered, tok *oauth2.Token) (map[string]json.RawMessage, error) {
	var raw map[string]json.RawMessage
	if rawID, _ := tok.Extra("id_token").(string); rawID != "" {
		idt, err := d.verifier.Verify(ctx, rawID)
		if err != nil {
			return nil, fmt.Errorf("the refreshed ID token failed verification: %w", err)
		}
		err = idt.Claims(&raw)
		return raw, err
	}
	info, err := d.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return nil, err
	}
	err = info.Claims(&raw)
	return raw, err
}

// end records that the provider ended id's sessions: every replica then
// refuses the user's OIDC tokens.
func (u *oidcUsers) end(ctx context.Context, id string, rec oidcUserRecord, now time.Time, why string) (authn.User, error) {
	rec.Ended, rec.Refresh, rec.Checked = why, "", now.UnixNano()
	if err := u.put(ctx, id, rec, now); err != nil {
		return authn.User{}, fmt.Errorf("%w: %w", authn.ErrUsersUnavailable, err)
	}
	u.log.LogAttrs(ctx, slog.LevelInfo, "oidc: the provider ended a user's sessions",
		slog.String("user", clip(id, maxClaimBytes)), slog.String("reason", why))
	return authn.User{}, authn.ErrUserNotFound
}

var errIdentityDown = apiError{http.StatusServiceUnavailable, "identity_unavailable", "the identity provider or the revocation store cannot say who this user is now; retry later"}

// oidcUserEnded refuses an OIDC token whose user the provider no longer
// knows (refresh token refused, no longer allowed), or whose identity
// cannot be read at all within the staleness bound (503).
func (h *handler) oidcUserEnded(ctx context.Context, c authn.Claims) (authOutcome, bool) {
	if h.oidcIdentities == nil {
		return authOutcome{}, false
	}
	_, err := h.oidcIdentities.Identity(ctx, c.Subject)
	switch {
	case err == nil:
		return authOutcome{}, false
	case errors.Is(err, authn.ErrUserNotFound):
		return authOutcome{decision: decisionRevoked, err: errTokenRevoked}, true
	default:
		h.logger.LogAttrs(ctx, slog.LevelError, "oidc: cannot tell who a token's user is now",
			slog.String("request_id", RequestIDFromContext(ctx)), slog.Any("error", err))
		return authOutcome{decision: decisionError, err: errIdentityDown}, true
	}
}

// oidcParts is the OpenID Connect state New builds before the handler.
type oidcParts struct {
	client     *oidcClient
	users      *oidcUsers
	identities *authn.Identities
}

// newOIDC builds the OIDC client and, with Records, the OIDC users'
// identities; it then makes opts.Identities answer for OIDC tokens from
// those (oidcAwareIdentities). opts has its defaults applied.
func newOIDC(opts *Options) (oidcParts, error) {
	var p oidcParts
	if opts.OIDC == nil {
		return p, nil
	}
	o := opts.OIDC
	var err error
	if p.client, err = newOIDCClient(*o, opts.Routes, newBrowser(opts.Routes, opts.Browser)); err != nil {
		return p, err
	}
	if o.Records == nil {
		opts.Identities = oidcAwareIdentities{local: opts.Identities}
		return p, nil
	}
	p.users = &oidcUsers{c: p.client, records: o.Records, refresh: o.RefreshInterval / 2,
		maxStale: o.MaxStale, life: o.RecordLife, now: opts.Now, log: opts.Logger}
	// Half the interval here and half in the store's record: a change at
	// the provider shows within the whole interval.
	p.identities, err = authn.NewIdentities(p.users, authn.IdentitiesOptions{
		RefreshInterval: o.RefreshInterval / 2, MaxStale: o.MaxStale, Timeout: 3 * o.Timeout,
		Now: opts.Now, Logger: opts.Logger,
	})
	if err != nil {
		return p, err
	}
	opts.Identities = oidcAwareIdentities{local: opts.Identities, oidc: p.identities}
	return p, nil
}

// oidcAwareIdentities answers who a token's user is now from the right
// source: the provider's identities for a token of an OIDC sign-in (its
// check marks the context, see withOIDCToken), the user store's for any
// other. The two never mix, so a local user and a provider's user who
// happen to share an id never get each other's groups. Without a user
// store's Identities (local nil), a non-OIDC token's user is taken as
// existing, with no groups, as when Options.Identities is nil; so is an
// OIDC token's without OIDCOptions.Records.
type oidcAwareIdentities struct {
	local Identities
	oidc  *authn.Identities
}

func (o oidcAwareIdentities) Identity(ctx context.Context, id string) (authn.User, error) {
	if oidcToken(ctx) {
		if o.oidc == nil { // no Records: nothing kept about OIDC users
			return authn.User{ID: id}, nil
		}
		return o.oidc.Identity(ctx, id)
	}
	if o.local == nil {
		return authn.User{ID: id}, nil
	}
	return o.local.Identity(ctx, id)
}

type oidcTokenKey struct{}

// withOIDCToken marks ctx as checking a token of an OIDC sign-in.
func withOIDCToken(ctx context.Context) context.Context {
	return context.WithValue(ctx, oidcTokenKey{}, true)
}

func oidcToken(ctx context.Context) bool {
	v, _ := ctx.Value(oidcTokenKey{}).(bool)
	return v
}
