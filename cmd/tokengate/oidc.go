package main

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"os"
	"time"

	"tokengate/internal/config"
	"tokengate/proxy"
	"tokengate/revocation"
)

// oidcOptions builds the OpenID Connect sign-in options; nil when
// oidc.issuer is empty (off).
func oidcOptions(cfg config.Config, store revocation.Store) (*proxy.OIDCOptions, error) {
	o := cfg.OIDC
	if o.Issuer == "" {
		return nil, nil
	}
	secret := o.ClientSecret // TOKENGATE_OIDC_CLIENT_SECRET
	if o.ClientSecretFile != "" {
		b, err := readSecretFile(cfg.Resolve(o.ClientSecretFile), 1)
		if err != nil {
			return nil, fmt.Errorf("oidc.client_secret_file: %w", err)
		}
		secret = string(b)
	}
	key, err := oidcCookieKey(cfg)
	if err != nil {
		return nil, err
	}
	records, ok := store.(proxy.Records)
	if !ok {
		return nil, fmt.Errorf("revocation.backend %s: cannot keep OIDC identities", cfg.Revocation.Backend)
	}
	return &proxy.OIDCOptions{
		Issuer:                o.Issuer,
		ClientID:              o.ClientID,
		ClientSecret:          secret,
		RedirectURL:           o.RedirectURL,
		Scopes:                o.Scopes,
		IDClaim:               o.IDClaim,
		UsernameClaim:         o.UsernameClaim,
		GroupsClaim:           o.GroupsClaim,
		Name:                  o.Name,
		AllowedEmailDomains:   o.AllowedEmailDomains,
		AllowedGroups:         o.AllowedGroups,
		HidePasswordForm:      !o.PasswordForm,
		NoProviderLogout:      !o.ProviderLogout,
		PostLogoutRedirectURL: o.PostLogoutRedirectURL,
		Key:                   key,
		Timeout:               o.Timeout,
		// The identities live beside the revocations, where every replica
		// reads them; kept as long as a token can live (refresh included).
		Records:         records,
		RefreshInterval: cfg.Users.RefreshInterval,
		MaxStale:        cfg.Users.MaxStale,
		RecordLife:      cfg.Tokens.TTL + cfg.Tokens.RefreshWindow + cfg.Tokens.Leeway + time.Hour,
	}, nil
}

// oidcCookieKey derives the key that seals the OpenID Connect cookies (the
// sign-in state, the ID token kept for logout) from the signing key file,
// like browserCSRFKey and with its own label: every replica sharing the
// file opens the cookies the others set.
func oidcCookieKey(cfg config.Config) ([]byte, error) {
	secret, err := os.ReadFile(cfg.Resolve(cfg.Tokens.SigningKeyFile))
	if err != nil {
		return nil, fmt.Errorf("tokens.signing_key_file: %w", err)
	}
	key, err := hkdf.Key(sha256.New, secret, nil, "tokengate oidc cookies v1", 32)
	if err != nil {
		return nil, fmt.Errorf("deriving the OIDC cookie key: %w", err)
	}
	return key, nil
}

// probeOIDC fetches the provider's discovery document (check-config
// --probe) and describes what it found.
func probeOIDC(cfg config.Config) (string, error) {
	if cfg.OIDC.Issuer == "" {
		return "", nil
	}
	auth, token, endSession, err := proxy.ProbeOIDC(context.Background(), cfg.OIDC.Issuer, cfg.OIDC.Timeout)
	if err != nil {
		return "", fmt.Errorf("oidc.issuer: %w", err)
	}
	if endSession == "" {
		endSession = "none (signing out stays local)"
	}
	return fmt.Sprintf("oidc: discovery OK at %s (authorization %s, token %s, end session %s)", cfg.OIDC.Issuer, auth, token, endSession), nil
}
