package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"tokengate/internal/config"

	"tokengate/authn"
)

// The demo's one user.
const (
	demoUser     = "marco"
	demoPassword = "tokengate-demo"
)

// cmdDemo runs tokengate on its embedded defaults in front of a small echo
// app, with one demo user, and prints how to call it.
func cmdDemo(ctx context.Context, args []string, e env) int {
	fset := newFlagSet("demo", e)
	listen := fset.String("listen", "127.0.0.1:8081", "tokengate's public address")
	adminListen := fset.String("admin-listen", "127.0.0.1:9091", "tokengate's admin address")
	appListen := fset.String("app-listen", "127.0.0.1:8080", "the demo echo app's address")
	dir := fset.String("dir", "", "directory for the demo's key, users file and revocations (default: a new temp dir)")
	if code, ok := parseFlags(fset, args, e); !ok {
		return code
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "tokengate-demo-")
		if err != nil {
			fmt.Fprintf(e.stderr, "demo: %v\n", err)
			return exitError
		}
		*dir = d
		// The temp dir holds a private signing key: it goes when the demo
		// stops (Ctrl-C, SIGTERM). A --dir is the user's and stays.
		defer os.RemoveAll(d)
	} else if err := os.MkdirAll(*dir, 0o700); err != nil {
		fmt.Fprintf(e.stderr, "demo: %v\n", err)
		return exitError
	}
	hash, err := authn.HashPassword(demoPassword, authn.HashOptions{})
	if err != nil {
		fmt.Fprintf(e.stderr, "demo: %v\n", err)
		return exitError
	}
	usersFile := filepath.Join(*dir, "users.yaml")
	users := fmt.Sprintf("users:\n  - username: %s\n    password_hash: %q\n", demoUser, hash)
	if err := os.WriteFile(usersFile, []byte(users), 0o600); err != nil {
		fmt.Fprintf(e.stderr, "demo: %v\n", err)
		return exitError
	}

	appLn, err := net.Listen("tcp", *appListen)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokengate: cannot listen on %s (the demo echo app): %v; use --app-listen to choose another address\n", *appListen, unwrapSyscall(err))
		return exitError
	}
	defer appLn.Close()

	cfg, ok := loadConfig("", e) // embedded defaults, TOKENGATE_* overrides
	if !ok {
		return exitConfig
	}
	cfg.Listen, cfg.AdminListen = *listen, *adminListen
	cfg.Upstream = "http://" + appLn.Addr().String()
	cfg.Users.Backend, cfg.Users.File = "file", usersFile
	cfg.Tokens.SigningKeyFile = filepath.Join(*dir, "signing.key")
	cfg.Revocation.Backend, cfg.Revocation.Path = "bolt", filepath.Join(*dir, "revocations.db")
	cfg.Server.ShutdownDelay = 0 // no endpoints to update outside Kubernetes
	// Browser sign-in over plain HTTP: a Secure cookie would never be sent
	// back to http://127.0.0.1. Development only, as here.
	cfg.Browser.CookieSecure = false
	if cfg.LogFormat == config.Default().LogFormat {
		cfg.LogFormat = "text"
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(e.stderr, "demo: %v\n", err)
		return exitError
	}
	signOut := "" // no link when browser sign-in is turned off
	if cfg.Routes.SignIn != "" {
		signOut = cfg.Routes.SignOut
	}
	app := &http.Server{Handler: echoHandler(signOut), ReadHeaderTimeout: 5 * time.Second}
	go app.Serve(appLn)
	defer app.Close()
	e.listenFlags = map[string]string{"listen": "--listen", "admin_listen": "--admin-listen"}
	e.started = func(a addrs) { printDemoHelp(e, a, appLn.Addr().String(), *dir, cfg.Routes.SignIn != "") }
	return serve(ctx, cfg, e)
}

func printDemoHelp(e env, a addrs, app, dir string, browser bool) {
	_, port, _ := net.SplitHostPort(a.Public)
	fmt.Fprintf(e.stdout, `
tokengate demo is running.
  tokengate (public): http://%[1]s   in front of the echo app on http://%[2]s
  admin:              http://%[3]s/metrics  /healthz  /readyz
  demo user:          %[4]s / %[5]s      (files in %[6]s)
`, a.Public, app, a.Admin, demoUser, demoPassword, dir)
	if browser {
		fmt.Fprintf(e.stdout, `
In a browser:
  open http://%[1]s/ and sign in as %[2]s / %[3]s.
  The app greets you by the name tokengate told it (X-Auth-UserId).
  Reload: you stay signed in. Sign out with the link on the page:
  you are asked to sign in again.
`, a.Public, demoUser, demoPassword)
	}
	fmt.Fprintf(e.stdout, `
With httpie (in a script, add --ignore-stdin after "http"):
  http POST :%[7]s/user/login username=%[4]s password=%[5]s
  http :%[7]s/hello 'Authorization: Bearer <token>'        # the app sees X-Auth-UserId: %[4]s
  http POST :%[7]s/user/logout 'Authorization: Bearer <token>'   # 204; the token is now refused
  http POST :%[7]s/user/logout_all 'Authorization: Bearer <token>'

With curl:
  TOKEN=$(curl -s -X POST http://%[1]s/user/login -H 'Content-Type: application/json' \
          -d '{"username":"%[4]s","password":"%[5]s"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  curl -s http://%[1]s/hello -H "Authorization: Bearer $TOKEN"
  curl -s http://%[1]s/hello -H 'X-Auth-UserId: admin'       # 401: a client-sent identity is never trusted
  curl -si -X POST http://%[1]s/user/logout -H "Authorization: Bearer $TOKEN"
  curl -si http://%[1]s/hello -H "Authorization: Bearer $TOKEN"   # 401 token_revoked

Press Ctrl-C to stop.
`, a.Public, app, a.Admin, demoUser, demoPassword, dir, port)
}

// echoHandler is the demo app: it answers with the request it received,
// so you can see the X-Auth-UserId header tokengate set. A browser (Accept:
// text/html) gets a small page greeting the user, with a link to signOut
// ("" hides it); API clients get JSON.
func echoHandler(signOut string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers := map[string]string{}
		names := make([]string, 0, len(r.Header))
		for name := range r.Header {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			v := r.Header.Values(name)
			if name == "Authorization" {
				headers[name] = "[redacted by the demo app]"
				continue
			}
			b, _ := json.Marshal(v)
			if len(v) == 1 {
				headers[name] = v[0]
			} else {
				headers[name] = string(b)
			}
		}
		if strings.Contains(r.Header.Get("Accept"), "text/html") {
			page := demoPage{User: r.Header.Get("X-Auth-UserId"), Method: r.Method, Path: r.URL.RequestURI(), SignOut: signOut}
			for _, name := range names {
				page.Headers = append(page.Headers, [2]string{name, headers[name]})
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			_ = demoPageTemplate.Execute(w, page)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{
			"app":     "tokengate demo echo app",
			"method":  r.Method,
			"path":    r.URL.RequestURI(),
			"user_id": r.Header.Get("X-Auth-UserId"),
			"headers": headers,
		})
	})
}

//go:embed demo_page.html
var demoPageHTML string

var demoPageTemplate = template.Must(template.New("demo").Parse(demoPageHTML))

// demoPage is what the demo app shows a browser.
type demoPage struct {
	User, Method, Path, SignOut string
	Headers                     [][2]string // name, value; sorted by name
}
