package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"tokengate/internal/testsvc"
)

// The browser tests drive one headless Chromium per test binary (started on
// first use, closed by TestMain); each test gets its own tab in its own
// browser context, so cookies never leak between tests.

// browserActionTimeout bounds every single browser action.
const browserActionTimeout = 15 * time.Second

var theBrowser struct {
	once    sync.Once
	ctx     context.Context // the first tab's context: owns the browser process
	cancel  context.CancelFunc
	dataDir string
	err     error
}

// chromiumPath finds Debian's chromium (TOKENGATE_TEST_CHROMIUM overrides).
func chromiumPath() (string, error) {
	if p := os.Getenv("TOKENGATE_TEST_CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium not found (Debian package chromium; .ci/run installs it)")
}

func startBrowser() error {
	path, err := chromiumPath()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tokengate-chromium-")
	if err != nil {
		return err
	}
	theBrowser.dataDir = dir
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(dir), // fresh profile: no cookies, no HSTS, no history
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.WindowSize(1024, 768),
	)
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	theBrowser.ctx = ctx
	theBrowser.cancel = func() { cancel(); allocCancel() }
	// The first Do binds the browser's life to ctx, so it runs without a
	// deadline; the wait for it has one.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err = <-started:
	case <-time.After(30 * time.Second):
		err = errors.New("chromium did not start within 30s")
	}
	if err != nil {
		theBrowser.cancel()
		return fmt.Errorf("starting %s: %w", path, err)
	}
	return nil
}

// closeBrowser stops the shared browser, if one was started (TestMain).
func closeBrowser() {
	if theBrowser.cancel != nil {
		theBrowser.cancel()
	}
	if theBrowser.dataDir != "" {
		os.RemoveAll(theBrowser.dataDir)
	}
}

// newTab opens a tab in a fresh browser context (its own cookie jar) of the
// shared browser; it closes when the test ends. Without chromium the test
// skips, or fails under TOKENGATE_TEST_REQUIRE_SERVICES=1.
func newTab(t *testing.T) context.Context {
	t.Helper()
	theBrowser.once.Do(func() { theBrowser.err = startBrowser() })
	if theBrowser.err != nil {
		if testsvc.Required() {
			t.Fatalf("required service unavailable (TOKENGATE_TEST_REQUIRE_SERVICES=1): %v", theBrowser.err)
		}
		t.Skipf("skipping: %v", theBrowser.err)
	}
	tab, cancel := chromedp.NewContext(theBrowser.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// As for the browser, the tab's first Do binds the tab to tab.
	opened := make(chan error, 1)
	go func() { opened <- chromedp.Do(tab) }()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("opening a tab: %v", err)
		}
	case <-time.After(browserActionTimeout):
		t.Fatalf("opening a tab: not done within %s", browserActionTimeout)
	}
	return tab
}

// browse runs actions in tab, each call within browserActionTimeout.
func browse(t *testing.T, tab context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserActionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// browseValue runs one action that returns a value, within browserActionTimeout.
func browseValue[T any](t *testing.T, tab context.Context, action chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserActionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// load runs actions that cause a navigation (a link, a form submit, a
// reload) and returns the HTTP response of the document the tab ends on,
// after any redirects.
func load(t *testing.T, tab context.Context, actions ...chromedp.Action[chromedp.Void]) *network.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserActionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return resp
}

// location is the tab's current URL.
func location(t *testing.T, tab context.Context) string {
	t.Helper()
	return browseValue(t, tab, chromedp.Location())
}

// cookie returns the tab's cookie called name for url, or nil. CDP sees
// HttpOnly cookies too.
func cookie(t *testing.T, tab context.Context, url, name string) *network.Cookie {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserActionTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		t.Fatalf("browser: reading cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// describeCookie shows a cookie's attributes for a failure message, never
// its value (a session cookie holds a token).
func describeCookie(c *network.Cookie) string {
	if c == nil {
		return "no cookie"
	}
	return fmt.Sprintf("%s: Domain=%s Path=%s HttpOnly=%v Secure=%v SameSite=%q Session=%v Expires=%s",
		c.Name, c.Domain, c.Path, c.HTTPOnly, c.Secure, c.SameSite, c.Session, time.Unix(int64(c.Expires), 0).UTC().Format(time.RFC3339))
}
