package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRecoverPanics(t *testing.T) {
	e := newEnv(t)
	opts := e.opts
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hh := h.(*handler)

	t.Run("a panic becomes a logged 500", func(t *testing.T) {
		srv := httptest.NewServer(chain(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			panic("boom")
		}), hh.recoverPanics, hh.assignRequestID, hh.observe))
		defer srv.Close()
		res, err := http.Get(srv.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 500 || res.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Fatalf("%d %q", res.StatusCode, res.Header.Get("Content-Type"))
		}
		if !strings.Contains(e.logs.String(), `"msg":"panic serving request"`) {
			t.Error("the panic was not logged")
		}
		if got := metricValue(t, reg, "tokengate_http_requests_total", map[string]string{"route": "proxy", "code": "500"}); got != 1 {
			t.Errorf("requests{proxy,500} = %v", got)
		}
	})
	t.Run("ErrAbortHandler still aborts the connection", func(t *testing.T) {
		srv := httptest.NewServer(chain(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(200)
			w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}), hh.recoverPanics, hh.assignRequestID, hh.observe))
		defer srv.Close()
		res, err := http.Get(srv.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if _, err := io.ReadAll(res.Body); err == nil {
			t.Fatal("the body ended cleanly: the abort was swallowed")
		}
	})
}
