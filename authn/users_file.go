package authn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// FileUsersOptions configure a users file store.
type FileUsersOptions struct {
	Logger     *slog.Logger          // default: discard
	Registerer prometheus.Registerer // optional: tokengate_users_reloads_total, tokengate_users_last_reload_success
}

// DefaultWatchInterval is how often Watch looks at the users file.
const DefaultWatchInterval = time.Second

// maxUsersFileBytes bounds the users file (about 100k users).
const maxUsersFileBytes = 32 << 20

// FileUsers is a UserStore read from a YAML users file, reloadable. It is
// read-only: it does not implement UserCreator.
//
//	users:
//	  - username: marco
//	    password_hash: "$2a$10$..."   # bcrypt or argon2id PHC
//	    id: marco                     # optional; defaults to username
//	    groups: [ops, finance]        # optional; see CheckGroupName
type FileUsers struct {
	path  string
	log   *slog.Logger
	users atomic.Pointer[userSet]

	mu         sync.Mutex        // serialises Reload
	lastSeen   [sha256.Size]byte // content of the version loaded (or refused) last
	pending    *pendingVersion   // a changed version not yet stable
	unreadable int               // consecutive polls that could not read the file

	reloadOK, reloadErr prometheus.Counter // nil without a Registerer
	lastOK              prometheus.Gauge   // nil without a Registerer
}

var (
	_ UserStore     = (*FileUsers)(nil)
	_ hashInventory = (*FileUsers)(nil)
	_ memoryStore   = (*FileUsers)(nil)
)

// userSet is one loaded version of the users file.
type userSet struct {
	byName map[string]User
	byID   map[string]User
	// dummy has the parameters of the most expensive hash in the file.
	dummy string
	// paramSets counts the distinct hash parameter sets in the file; past
	// one, users with cheaper hashes answer faster than unknown names.
	paramSets int
}

// warnMixedHashes says, at each load, when the file's hashes differ in cost.
func (f *FileUsers) warnMixedHashes() {
	if n := f.users.Load().paramSets; n > 1 {
		f.log.Warn("users file holds password hashes with different parameters: users with cheaper hashes answer a login faster than an unknown name; re-hash them with one algorithm and cost",
			"path", f.path, "parameter_sets", n)
	}
}

// LoadFileUsers reads the users file; an error here is fatal for the caller.
func LoadFileUsers(path string, opts FileUsersOptions) (*FileUsers, error) {
	f := &FileUsers{path: path, log: opts.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	data, err := readUsersFile(path)
	if err != nil {
		return nil, err
	}
	users, err := parseUsers(data)
	if err != nil {
		return nil, fmt.Errorf("authn: users file %s: %w", path, err)
	}
	f.users.Store(users)
	f.warnMixedHashes()
	f.lastSeen = sha256.Sum256(data)
	if opts.Registerer != nil {
		vec, err := registerCounterVec(opts.Registerer, prometheus.CounterOpts{
			Name: "tokengate_users_reloads_total",
			Help: "Users file reloads by result (success or error).",
		}, "result")
		if err != nil {
			return nil, err
		}
		f.reloadOK, f.reloadErr = vec.WithLabelValues("success"), vec.WithLabelValues("error")
		if f.lastOK, err = registerLastReloadGauge(opts.Registerer); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// LookupUser implements UserStore; the name's case does not matter.
func (f *FileUsers) LookupUser(ctx context.Context, username string) (User, error) {
	u, ok := f.users.Load().byName[foldName(username)]
	if !ok {
		return User{}, ErrUserNotFound
	}
	return u, nil
}

// LookupUserByID finds the user whose id (the token's sub) is id.
func (f *FileUsers) LookupUserByID(ctx context.Context, id string) (User, error) {
	u, ok := f.users.Load().byID[id]
	if !ok {
		return User{}, ErrUserNotFound
	}
	return u, nil
}

// answersFromMemory marks FileUsers for Identities: lookups read the
// snapshot the last reload swapped in, so they need no cache.
func (f *FileUsers) answersFromMemory() {}

// Groups returns every group some user of the loaded file has, sorted
// (for check-config: a rule naming a group nobody has is likely a typo).
func (f *FileUsers) Groups() []string {
	seen := map[string]bool{}
	for _, u := range f.users.Load().byName {
		for _, g := range u.Groups {
			seen[g] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// Len is the number of users currently loaded.
func (f *FileUsers) Len() int { return len(f.users.Load().byName) }

// dummyHash implements hashInventory.
func (f *FileUsers) dummyHash() (string, bool) {
	d := f.users.Load().dummy
	return d, d != ""
}

// Reload re-reads the file. On error the previous users stay in place; the
// error is logged (never a hash), counted and returned.
func (f *FileUsers) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, err := readUsersFile(f.path)
	if err == nil {
		f.lastSeen = sha256.Sum256(data)
		err = f.swap(data)
	}
	return f.record(err)
}

// Watch polls the file every interval (default 1s) and loads a new version
// once it is complete and stable: the same size, mtime and content at two
// polls at least one full interval apart (a writer still at work keeps
// changing it), and structurally sound (see parseUsers). Comparing content,
// not only mtime, also catches a Kubernetes Secret update, which swaps a
// ..data symlink and may keep the old mtime. A broken version is reported
// once, not at every poll. Watch blocks until ctx is done; run it in a
// goroutine you own.
func (f *FileUsers) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			f.poll(now, interval)
		}
	}
}

// unreadableReportAfter is how many polls in a row the users file may be
// unreadable (mid-replacement) before it counts as a failed reload.
const unreadableReportAfter = 3

// fileVersion identifies what one poll read.
type fileVersion struct {
	size  int64
	mtime time.Time
	sum   [sha256.Size]byte
}

// poll looks at the file at time now and loads it when a changed version
// has stayed the same for at least stableFor.
func (f *FileUsers) poll(now time.Time, stableFor time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, mtime, err := readUsersFileStat(f.path)
	if err != nil {
		// Missing for a moment while being replaced is normal: retry at
		// the next tick, and report it (once) only if it stays unreadable.
		f.pending = nil
		f.unreadable++
		if f.unreadable == unreadableReportAfter {
			f.lastSeen = [sha256.Size]byte{} // a later good file reloads even if unchanged
			f.record(err)
		} else {
			f.log.Debug("users file unreadable; keeping the previous users", "path", f.path, "error", err)
		}
		return
	}
	f.unreadable = 0
	v := fileVersion{size: int64(len(data)), mtime: mtime, sum: sha256.Sum256(data)}
	if v.sum == f.lastSeen {
		f.pending = nil
		return
	}
	if f.pending == nil || f.pending.version != v {
		// New, or still changing: wait until it holds still.
		f.pending = &pendingVersion{version: v, since: now}
		f.log.Debug("users file changed; waiting until it is stable", "path", f.path, "wait", stableFor)
		return
	}
	if now.Sub(f.pending.since) < stableFor {
		return
	}
	f.pending = nil
	f.lastSeen = v.sum
	f.record(f.swap(data))
}

// pendingVersion is a changed file waiting to prove it is stable.
type pendingVersion struct {
	version fileVersion
	since   time.Time // first seen
}

func (f *FileUsers) swap(data []byte) error {
	users, err := parseUsers(data)
	if err != nil {
		return err
	}
	f.users.Store(users)
	return nil
}

func (f *FileUsers) record(err error) error {
	if err != nil {
		err = fmt.Errorf("authn: reload users file %s: %w", f.path, err)
		f.log.Error("users file reload failed; keeping the previous users", "path", f.path, "error", err)
		if f.reloadErr != nil {
			f.reloadErr.Inc()
			f.lastOK.Set(0)
		}
		return err
	}
	f.log.Info("users file reloaded", "path", f.path, "users", f.Len())
	f.warnMixedHashes()
	if f.reloadOK != nil {
		f.reloadOK.Inc()
		f.lastOK.Set(1)
	}
	return nil
}

// registerLastReloadGauge registers tokengate_users_last_reload_success, at
// 1: the first load succeeded, or there would be no store. A gauge, unlike
// the counter, stays at 0 while a broken file is in place, which an alert
// can hold on to.
func registerLastReloadGauge(reg prometheus.Registerer) (prometheus.Gauge, error) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tokengate_users_last_reload_success",
		Help: "1 when the last users file reload (watched or SIGHUP) succeeded or none failed since start, else 0.",
	})
	if err := reg.Register(g); err != nil {
		are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
		if !ok {
			return nil, fmt.Errorf("authn: register tokengate_users_last_reload_success: %w", err)
		}
		if g, ok = are.ExistingCollector.(prometheus.Gauge); !ok {
			return nil, fmt.Errorf("authn: register tokengate_users_last_reload_success: %w", err)
		}
	}
	g.Set(1)
	return g, nil
}

func readUsersFile(path string) ([]byte, error) {
	data, _, err := readUsersFileStat(path)
	return data, err
}

// readUsersFileStat reads the file and the mtime of what it read.
func readUsersFileStat(path string) ([]byte, time.Time, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("authn: users file: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("authn: users file %s: %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxUsersFileBytes+1))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("authn: users file %s: %w", path, err)
	}
	if len(data) > maxUsersFileBytes {
		return nil, time.Time{}, fmt.Errorf("authn: users file %s: over %d bytes", path, maxUsersFileBytes)
	}
	return data, st.ModTime(), nil
}

type usersDoc struct {
	Users []struct {
		Username     string    `yaml:"username"`
		PasswordHash string    `yaml:"password_hash"`
		ID           yaml.Node `yaml:"id"`     // absent (Kind 0): the username; present: a non-empty scalar
		Groups       yaml.Node `yaml:"groups"` // absent or null: none; else a list of group names
	} `yaml:"users"`
}

// parseGroups reads a users file entry's groups: a list of distinct names
// that pass CheckGroupName. Errors name the line.
func parseGroups(n yaml.Node) ([]string, []error) {
	if n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null") {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, []error{fmt.Errorf("groups (line %d): want a list of group names, like groups: [ops, finance]", n.Line)}
	}
	if len(n.Content) > MaxGroups {
		return nil, []error{fmt.Errorf("groups (line %d): %d groups, at most %d", n.Line, len(n.Content), MaxGroups)}
	}
	var (
		groups []string
		errs   []error
		seen   = map[string]int{}
	)
	for i, item := range n.Content {
		if item.Kind != yaml.ScalarNode || item.ShortTag() == "!!null" {
			errs = append(errs, fmt.Errorf("groups[%d] (line %d): want a group name", i, item.Line))
			continue
		}
		if err := CheckGroupName(item.Value); err != nil {
			errs = append(errs, fmt.Errorf("groups[%d] (line %d): %q %w", i, item.Line, item.Value, err))
			continue
		}
		if j, dup := seen[item.Value]; dup {
			errs = append(errs, fmt.Errorf("groups[%d] (line %d): %q is listed twice (also groups[%d])", i, item.Line, item.Value, j))
			continue
		}
		seen[item.Value] = i
		groups = append(groups, item.Value)
	}
	return groups, errs
}

// errNoFinalNewline: what a writer cut short mid-line leaves behind.
var errNoFinalNewline = errors.New("the file does not end with a newline, so it may be half-written; " +
	"write the users file to a temporary file in the same directory and rename it over the old one")

// parseUsers decodes and validates a users file: every problem is
// reported, each naming its entry (by index and username, never by hash).
// Besides well-formed YAML it wants what a complete file has: a final
// newline, and every entry a username, a recognised password_hash, when
// id is given a non-empty id, and when groups are given a list of distinct
// valid group names (errors name the line).
func parseUsers(data []byte) (*userSet, error) {
	var doc usersDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return nil, errNoFinalNewline
	}
	if len(doc.Users) == 0 {
		// Also what a half-written file often looks like: refusing it keeps
		// the previous users on reload.
		return nil, errors.New("no users (want a top-level users: list)")
	}
	users := make(map[string]User, len(doc.Users)) // by folded username
	names := make(map[string]int, len(doc.Users))  // folded username -> entry
	ids := make(map[string]int, len(doc.Users))    // folded id -> entry
	var (
		errs      []error
		costliest hashParams
		sets      = map[hashParams]bool{}
	)
	for i, e := range doc.Users {
		name := fmt.Sprintf("users[%d]", i)
		if e.Username == "" {
			errs = append(errs, fmt.Errorf("%s: username is empty", name))
			continue
		}
		name = fmt.Sprintf("users[%d] (%q)", i, e.Username)
		if err := checkHashFormat(e.PasswordHash); err != nil {
			errs = append(errs, fmt.Errorf("%s: password_hash: %w", name, err))
		} else {
			p, _ := paramsOf(e.PasswordHash)
			if costliest.alg == "" || p.moreExpensive(costliest) {
				costliest = p
			}
			sets[p] = true
		}
		id := e.Username
		if e.ID.Kind != 0 {
			if id = e.ID.Value; e.ID.Kind != yaml.ScalarNode || e.ID.ShortTag() == "!!null" || id == "" {
				errs = append(errs, fmt.Errorf("%s: id is empty or not a string (leave it out to use the username)", name))
				continue
			}
		}
		// Names and ids that differ only in case are one user to a login
		// and to an app that lowercases ids: refuse the second.
		if j, dup := names[foldName(e.Username)]; dup {
			errs = append(errs, fmt.Errorf("%s: duplicate username (equal to users[%d] ignoring case)", name, j))
			continue
		}
		if j, dup := ids[foldName(id)]; dup {
			errs = append(errs, fmt.Errorf("%s: id %q already used by users[%d] (ids are compared ignoring case)", name, id, j))
			continue
		}
		groups, gerrs := parseGroups(e.Groups)
		for _, err := range gerrs {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		names[foldName(e.Username)], ids[foldName(id)] = i, i
		users[foldName(e.Username)] = User{ID: id, Username: e.Username, PasswordHash: e.PasswordHash, Groups: groups}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	byID := make(map[string]User, len(users))
	for _, u := range users {
		byID[u.ID] = u
	}
	return &userSet{byName: users, byID: byID, dummy: costliest.dummyHash(), paramSets: len(sets)}, nil
}
