// Command tokengate is a reverse-proxy authentication sidecar: it serves the
// login/logout endpoints itself, checks a Bearer JWT on every other request
// and forwards authenticated requests to the app with X-Auth-UserId set.
//
//	tokengate serve --config FILE         run the sidecar
//	tokengate check-config --config FILE  validate and exit 0, or print errors and exit 2
//	tokengate check-access --config FILE [--user ID | --groups a,b | --anonymous] METHOD URL
//	                                      explain what the access rules decide (exit 0 allowed, 1 refused)
//	tokengate hash-password               read a password on stdin, print its hash
//	tokengate revoke-user --config FILE --user ID|NAME   operator: revoke every token of a user
//	tokengate add-user --config FILE --user NAME   create a user (password on stdin)
//	tokengate demo                        run on embedded defaults in front of an echo app
//	tokengate version                     print version, commit, Go version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"tokengate/internal/config"
)

// Stamped by the build (-ldflags "-X main.version=... -X main.commit=...").
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1 // runtime failure
	exitConfig = 2 // bad config or usage
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Environ()))
}

// env is what a subcommand may see of the process: tests pass their own.
type env struct {
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	environ []string
	// hup delivers reload requests (SIGHUP); nil means none.
	hup <-chan os.Signal
	// started, when set, receives the bound addresses once serving.
	started func(addrs)
	// reloadConfig reads the configuration again on SIGHUP (nil: none).
	reloadConfig func() (*config.Config, error)
	// listenFlags names, by config key (listen, admin_listen), the flag
	// that sets that address, for the error when it is taken; nil: the
	// config key and its TOKENGATE_ variable are named instead.
	listenFlags map[string]string
}

// addrs are the listeners' real addresses (useful with :0).
type addrs struct{ Public, Admin string }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) int {
	e := env{stdin: stdin, stdout: stdout, stderr: stderr, environ: environ}
	if len(args) > 0 && (args[0] == "serve" || args[0] == "demo") {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		e.hup = hup
	}
	return dispatch(ctx, args, e)
}

func dispatch(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitConfig
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, e)
	case "check-config":
		return cmdCheckConfig(rest, e)
	case "check-access":
		return cmdCheckAccess(ctx, rest, e)
	case "hash-password":
		return cmdHashPassword(rest, e)
	case "revoke-user":
		return cmdRevokeUser(ctx, rest, e)
	case "add-user":
		return cmdAddUser(ctx, rest, e)
	case "demo":
		return cmdDemo(ctx, rest, e)
	case "version", "--version", "-version":
		return cmdVersion(rest, e)
	case "help", "-h", "--help", "-help":
		usage(e.stdout)
		return exitOK
	default:
		fmt.Fprintf(e.stderr, "tokengate: unknown command %q\n\n", cmd)
		usage(e.stderr)
		return exitConfig
	}
}

// cmdVersion prints the version; --help its usage, like every command.
func cmdVersion(args []string, e env) int {
	fset := newFlagSet("version", e)
	if code, ok := parseFlags(fset, args, e); !ok {
		return code
	}
	fmt.Fprintf(e.stdout, "tokengate %s (commit %s, %s %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: tokengate <command> [flags]

commands:
  serve --config FILE              run the sidecar (embedded defaults without --config)
  check-config --config FILE [--config-only] [--probe]
                                   validate config and the files it names; exit 2 on problems
  check-access --config FILE [--user ID | --groups a,b | --anonymous] [--client IP] METHOD URL
                                   explain which access rule decides a request and why;
                                   exit 0 allowed, 1 refused, 2 bad config or usage
  hash-password [--algorithm bcrypt|argon2id] [--cost N]
                                   read a password on stdin, print its hash on the last line
  revoke-user --config FILE --user ID|NAME [--force-id] [--admin-url URL]
                                   operator: revoke every token of a user (needs admin_token_file)
  add-user --config FILE --user NAME
                                   create a user in the bolt or PostgreSQL store (password on stdin)
  demo [--listen ADDR] [--admin-listen ADDR] [--app-listen ADDR] [--dir DIR]
                                   run on embedded defaults in front of a demo echo app
  version                          print version, commit and Go version

"tokengate <command> --help" lists a command's flags. Exit codes: 0 ok,
2 bad configuration, missing file or usage, 1 failure at run time.
`)
}

// newFlagSet returns a flag set that reports errors instead of exiting.
// parseFlags prints its usage: on stdout for --help, on stderr after an error.
func newFlagSet(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet("tokengate "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses and rejects stray arguments. When ok is false the
// command returns code: 0 after --help (the flags printed on stdout), 2 after
// a usage error.
func parseFlags(fs *flag.FlagSet, args []string, e env) (code int, ok bool) {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printFlags(fs, e.stdout)
		return exitOK, false
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
	}
	if err != nil { // flag has printed the parse error itself
		printFlags(fs, e.stderr)
		return exitConfig, false
	}
	return exitOK, true
}

func printFlags(fs *flag.FlagSet, w io.Writer) {
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if !hasFlags {
		fmt.Fprintf(w, "usage: %s\n", fs.Name())
		return
	}
	fmt.Fprintf(w, "usage: %s [flags]\n\nflags:\n", fs.Name())
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// loadConfig loads and validates; it prints every problem and reports false.
func loadConfig(path string, e env) (config.Config, bool) {
	cfg, err := config.Load(path, e.environ)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "tokengate: invalid configuration%s:\n", inFile(path))
		for _, line := range flattenErrors(err) {
			fmt.Fprintf(e.stderr, "  %s\n", line)
		}
		return config.Config{}, false
	}
	return cfg, true
}

func inFile(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

// flattenErrors lists the leaves of an errors.Join tree, one per line.
func flattenErrors(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		out = append(out, err.Error())
	}
	walk(err)
	if len(out) == 0 && err != nil {
		out = append(out, err.Error())
	}
	return out
}
