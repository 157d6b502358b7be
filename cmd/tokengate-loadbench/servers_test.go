package main

import (
	"net/http"
	"testing"
	"time"
)

// TestChildServerMatchesTokengateDefaults keeps the bare proxy's server
// limits those of tokengate's defaults (cmd/tokengate config.go: server.*):
// a limit only one side sets changes its per-request work (ReadTimeout
// re-arms a read deadline on every request) and so the comparison.
func TestChildServerMatchesTokengateDefaults(t *testing.T) {
	srv := childServer(http.NotFoundHandler())
	tests := []struct {
		name      string
		got, want any
	}{
		{"ReadHeaderTimeout", srv.ReadHeaderTimeout, 10 * time.Second},
		{"ReadTimeout", srv.ReadTimeout, 60 * time.Second},
		{"WriteTimeout", srv.WriteTimeout, time.Duration(0)},
		{"IdleTimeout", srv.IdleTimeout, 120 * time.Second},
		{"MaxHeaderBytes", srv.MaxHeaderBytes, 65536},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("%s = %v, want %v (tokengate's default)", tt.name, tt.got, tt.want)
			}
		})
	}
}
