// Package proxy is tokengate's HTTP front: it serves the identity endpoints
// (login, logout, logout_all, session, users, jwks), checks the Bearer token
// on every other request and forwards it to the upstream through
// httputil.ReverseProxy with the identity header set.
package proxy
