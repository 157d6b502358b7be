package proxy

import (
	"net/http"
	"strings"
)

// dropNonWebSocketUpgrade removes every protocol upgrade the upstream must
// not see. Only a WebSocket upgrade passes: once an app answers 101, the
// connection is a tunnel tokengate no longer inspects, so an h2c upgrade
// would let a client speak HTTP/2 straight to the app, on any path and with
// any identity header (issue 13). Removing the offer instead of refusing the
// request is what RFC 9110 section 7.8 allows a server to do ("MAY ignore a
// received Upgrade header field"), and it keeps clients that offer h2c on
// every plain-HTTP request (Java's HttpClient by default, curl --http2)
// working over HTTP/1.1.
//
// It runs on the outgoing request, after ReverseProxy removed the hop-by-hop
// headers and set Connection and Upgrade again from the client's first
// Upgrade line: so a Connection token cannot bring an Upgrade back.
func dropNonWebSocketUpgrade(h http.Header) {
	// HTTP2-Settings only means something with an h2c upgrade; it never
	// passes, even when a client forgot to name it in Connection.
	delete(h, "Http2-Settings")
	up, ok := h["Upgrade"]
	if !ok || isWebSocketUpgrade(up) {
		return
	}
	delete(h, "Upgrade")
	delete(h, "Connection") // ReverseProxy set it to "Upgrade" for this offer
}

// isWebSocketUpgrade reports whether an Upgrade header offers WebSocket and
// nothing else: "websocket, h2c" lets the app pick h2c, so it does not count.
// The token is case-insensitive (RFC 6455 section 4.2.1).
func isWebSocketUpgrade(up []string) bool {
	return len(up) == 1 && strings.EqualFold(strings.TrimSpace(up[0]), "websocket")
}
