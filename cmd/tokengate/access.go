package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"tokengate/access"
	"tokengate/authn"
	"tokengate/internal/config"
)

// compileAccess compiles the configuration's rules (validated already).
func compileAccess(cfg config.Config) (*access.Rules, error) {
	rules, err := access.Compile(cfg.AccessRules())
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	return rules, nil
}

// cmdCheckAccess explains what the rules decide for one request:
//
//	tokengate check-access --config FILE [--user ID | --groups a,b | --anonymous] METHOD URL
//
// Exit 0 allowed, 1 refused, 2 bad configuration or usage.
func cmdCheckAccess(ctx context.Context, args []string, e env) int {
	fset := newFlagSet("check-access", e)
	configPath := fset.String("config", "", "config file (YAML)")
	user := fset.String("user", "", "judge as this user (id, or login name), with the groups the configured user store has now")
	groups := fset.String("groups", "", "judge as a signed-in user with these groups (comma-separated)")
	anonymous := fset.Bool("anonymous", false, "judge a request without a credential (the default)")
	client := fset.String("client", "", "the client address (after trusted_proxies), for rules with networks")
	override := fset.String("method-override", "", "an X-HTTP-Method-Override value the request carries")
	usageLine := "usage: tokengate check-access --config FILE [--user ID | --groups a,b | --anonymous] [--client IP] METHOD URL"
	err := fset.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(e.stdout, usageLine)
		printFlags(fset, e.stdout)
		return exitOK
	}
	if err != nil {
		printFlags(fset, e.stderr)
		return exitConfig
	}
	chosen := 0
	for _, set := range []bool{*user != "", *groups != "", *anonymous} {
		if set {
			chosen++
		}
	}
	if fset.NArg() != 2 || chosen > 1 {
		fmt.Fprintln(e.stderr, usageLine)
		if chosen > 1 {
			fmt.Fprintln(e.stderr, "check-access: give at most one of --user, --groups and --anonymous")
		}
		return exitConfig
	}
	req, err := accessRequestFor(fset.Arg(0), fset.Arg(1))
	if err != nil {
		fmt.Fprintf(e.stderr, "check-access: %v\n%s\n", err, usageLine)
		return exitConfig
	}
	if *client != "" {
		a, err := netip.ParseAddr(*client)
		if err != nil {
			fmt.Fprintf(e.stderr, "check-access: --client %q is not an IP address\n", *client)
			return exitConfig
		}
		req.Client = a
	}
	if *override != "" {
		req.MethodOverrides = []string{*override}
	}
	cfg, ok := loadConfig(*configPath, e)
	if !ok {
		return exitConfig
	}
	rules, err := compileAccess(cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "tokengate: %v\n", err)
		return exitConfig
	}

	id := access.Identity{}
	as := "anonymous (no credential)"
	switch {
	case *groups != "":
		id = access.Identity{Authenticated: true, ID: "", Groups: splitList(*groups)}
		as = fmt.Sprintf("a signed-in user with groups [%s]", strings.Join(id.Groups, ", "))
	case *user != "":
		u, err := lookupUser(ctx, cfg, *user)
		switch {
		case errors.Is(err, authn.ErrUserNotFound):
			fmt.Fprintf(e.stdout, "as:       user %q\ndecision: refused (401 user_unknown)\nwhy:      the users store (%s) has no user with that id or login name\n", *user, cfg.Users.Backend)
			return exitError
		case err != nil:
			fmt.Fprintf(e.stderr, "check-access: %v\n", err)
			return exitConfig
		}
		id = access.Identity{Authenticated: true, ID: u.ID, Groups: u.Groups}
		as = fmt.Sprintf("user %q (groups [%s], from users.backend %s)", u.ID, strings.Join(u.Groups, ", "), cfg.Users.Backend)
	}

	d := rules.Decide(&req, id)
	fmt.Fprintf(e.stdout, "request:  %s %s (host %q)\n", req.Method, req.Path, req.Host)
	fmt.Fprintf(e.stdout, "as:       %s\n", as)
	if d.Outcome == access.BadPath {
		fmt.Fprintf(e.stdout, "rule:     none\ndecision: refused (400 malformed_path)\nwhy:      %s\n", d.Reason)
		return exitError
	}
	rule := d.Source
	switch {
	case d.Index >= 0:
		rule = fmt.Sprintf("access.rules[%d] %q", d.Index, d.Name)
	case d.Name == access.NameDefault:
		rule = fmt.Sprintf("no rule matched: access.default (%s)", d.Policy)
	}
	fmt.Fprintf(e.stdout, "rule:     %s\n", rule)
	fmt.Fprintf(e.stdout, "policy:   %s\n", d.Policy)
	if d.Method != req.Method {
		fmt.Fprintf(e.stdout, "method:   judged as %s (the stricter of the request's method and its override)\n", d.Method)
	}
	switch d.Outcome {
	case access.Allow:
		fmt.Fprintf(e.stdout, "decision: allowed\nwhy:      %s\n", d.Reason)
		return exitOK
	case access.Unauthenticated:
		fmt.Fprintf(e.stdout, "decision: refused (401, or the sign-in page for a browser)\nwhy:      %s\n", d.Reason)
	default:
		fmt.Fprintf(e.stdout, "decision: refused (403 forbidden)\nwhy:      %s\n", d.Reason)
	}
	return exitError
}

// accessRequestFor reads METHOD and URL (absolute, or a path) as a server
// would receive them.
func accessRequestFor(method, target string) (access.Request, error) {
	if method == "" || strings.ContainsAny(method, " \t/") {
		return access.Request{}, fmt.Errorf("%q is not a method", method)
	}
	var u *url.URL
	var err error
	if strings.HasPrefix(target, "/") {
		u, err = url.ParseRequestURI(target)
	} else {
		u, err = url.Parse(target)
		if err == nil && (u.Scheme != "http" && u.Scheme != "https" || u.Host == "") {
			err = errors.New("want an http(s) URL or a path starting with /")
		}
	}
	if err != nil {
		return access.Request{}, fmt.Errorf("URL %q: %v", target, err)
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	return access.Request{Host: u.Host, Path: path, RawPath: u.RawPath, Method: method}, nil
}

func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// lookupUser finds a user by id, else by login name, in the configured
// store (opened read-only for the question, then closed).
func lookupUser(ctx context.Context, cfg config.Config, idOrName string) (authn.User, error) {
	a := &app{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	defer a.close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.openUsers(ctx, nil); err != nil {
		return authn.User{}, err
	}
	var (
		u   authn.User
		err error = authn.ErrUserNotFound
	)
	if byID, ok := a.users.(authn.UserByIDStore); ok {
		u, err = byID.LookupUserByID(ctx, idOrName)
	}
	if errors.Is(err, authn.ErrUserNotFound) {
		u, err = a.users.LookupUser(ctx, idOrName)
	}
	if err != nil {
		return authn.User{}, err
	}
	if u.ID == "" {
		u.ID = u.Username
	}
	return u, nil
}

// accessWarnings are what check-config reports about rules that load but
// are likely mistakes: a rule an earlier one shadows, and (users file) a
// group no user has.
func accessWarnings(cfg config.Config) []string {
	rules, err := compileAccess(cfg)
	if err != nil {
		return nil // Validate reported it
	}
	var out []string
	for _, s := range rules.Shadowed() {
		out = append(out, s.String())
	}
	if cfg.Users.Backend != "file" {
		return out
	}
	known, err := fileGroups(cfg.Resolve(cfg.Users.File))
	if err != nil {
		return out // checkFiles reported it
	}
	for _, g := range rules.Groups() {
		if !known[g.Group] {
			out = append(out, fmt.Sprintf("access.rules[%d].groups[%d]: no user in users.file has group %q", g.Index, g.Item, g.Group))
		}
	}
	return out
}

// maxUsersFileBytes bounds the users file check-config reads for groups.
const maxUsersFileBytes = 64 << 20

// fileGroups is every group some user of the users file has: the ids come
// from the file, the groups from authn's own reading of it.
func fileGroups(path string) (map[string]bool, error) {
	users, err := authn.LoadFileUsers(path, authn.FileUsersOptions{})
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxUsersFileBytes))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Users []struct {
			Username string `yaml:"username"`
		} `yaml:"users"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, entry := range doc.Users {
		u, err := users.LookupUser(context.Background(), entry.Username)
		if err != nil {
			continue
		}
		for _, g := range u.Groups {
			known[g] = true
		}
	}
	return known, nil
}
