package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"tokengate/authn"
	"tokengate/revocation"
)

// cmdMem measures tokengate's memory (issue 10, point 4): RSS of the real
// binary at the default cache sizes, idle, with idle keep-alive client
// connections, and with a million live revocations in bolt and in Redis
// while requests carrying revoked tokens fill both caches. It prints a
// markdown report.
//
//	tokengate-loadbench mem [-tokengate bin/tokengate] [-conns 1000]
//	    [-revocations 1000000] [-requests 120000] [-redis URL]
//	    [-gomemlimit SIZE] [-cgroup-limit SIZE]
//
// With -cgroup-limit each tokengate runs in a fresh memory cgroup with that
// hard limit and GOMEMLIMIT set from it, as in a Kubernetes container, and
// the report adds what the cgroup saw: usage, peak, how often the limit
// forced reclaim, OOM kills.
func cmdMem(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tokengate-loadbench mem", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o memOptions
	fs.StringVar(&o.bin, "tokengate", "bin/tokengate", "tokengate binary")
	fs.IntVar(&o.conns, "conns", 1000, "idle keep-alive client connections")
	fs.IntVar(&o.nRev, "revocations", 1_000_000, "live revocations written to each store")
	fs.IntVar(&o.nReq, "requests", 120_000, "distinct revoked tokens, each sent twice (fills the 100000-entry revocation cache and, on the second sighting, the verified-token cache)")
	fs.StringVar(&o.memLimit, "gomemlimit", "", "GOMEMLIMIT for tokengate (as the Kubernetes kit sets from the container's limit); \"\" leaves the Go default (none), or with -cgroup-limit sets it to the limit")
	fs.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/13", "Redis for the Redis case (a db of its own: the run deletes exactly the keys it wrote); \"\" skips it")
	fs.StringVar(&o.cgroupFlag, "cgroup-limit", "", "run each tokengate in a fresh memory cgroup with this hard limit (e.g. 64MiB; Linux, root), GOMEMLIMIT set from it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.cgroupFlag != "" {
		n, err := cgroupLimit(o.cgroupFlag)
		switch {
		case errors.Is(err, errNoCgroups):
			fmt.Fprintf(stdout, "cgroup-limited run skipped: %v\n", err)
			return 0
		case err != nil:
			fmt.Fprintf(stderr, "tokengate-loadbench mem: -cgroup-limit: %v\n", err)
			return 2
		}
		o.cgroupLimit = n
		if o.memLimit == "" {
			// What the kit's resourceFieldRef gives: limits.memory in bytes.
			o.memLimit = strconv.FormatInt(n, 10)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := runMem(ctx, &out, stderr, o)
	_, _ = stdout.Write(out.Bytes())
	if err != nil {
		fmt.Fprintf(stderr, "tokengate-loadbench mem: %v\n", err)
		return 1
	}
	return 0
}

// memOptions are cmdMem's flags.
type memOptions struct {
	bin                string
	conns, nRev, nReq  int
	redisURL, memLimit string
	cgroupFlag         string // -cgroup-limit as given
	cgroupLimit        int64  // bytes; 0: no cgroup
}

func (o memOptions) command() string {
	cmd := fmt.Sprintf("tokengate-loadbench mem -conns %d -revocations %d -requests %d -gomemlimit %q", o.conns, o.nRev, o.nReq, o.memLimit)
	if o.cgroupFlag != "" {
		cmd += " -cgroup-limit " + o.cgroupFlag
	}
	return cmd
}

func runMem(ctx context.Context, out, logw io.Writer, o memOptions) error {
	var env []string
	if o.memLimit != "" {
		env = []string{"GOMEMLIMIT=" + o.memLimit}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tokengate-mem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Cgroups go after their processes: this runs after killAll.
	var cgroups []*memCgroup
	defer func() {
		for _, cg := range cgroups {
			if err := cg.remove(); err != nil {
				fmt.Fprintf(logw, "mem: %v\n", err)
			}
		}
	}()
	if o.cgroupLimit > 0 {
		// Find out now, before the long fill, whether a cgroup can be made.
		cg, err := newMemCgroup(fmt.Sprintf("tokengate-loadbench-%d-probe", os.Getpid()), o.cgroupLimit)
		if err != nil {
			fmt.Fprintf(out, "cgroup-limited run skipped: %v\n", err)
			fmt.Fprintf(logw, "mem: cgroup-limited run skipped: %v\n", err)
			return nil
		}
		kind := cg.String()
		if err := cg.remove(); err != nil {
			return err
		}
		fmt.Fprintf(logw, "mem: cgroups work here (%s)\n", kind)
	}
	var p procs
	defer p.killAll()
	_, upAddr, err := p.startServer(ctx, "upstream", self, []string{"upstream"}, 10*time.Second)
	if err != nil {
		return err
	}
	upstream := "http://" + upAddr

	fmt.Fprintf(out, "### Memory %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(out, "- command: `%s`\n", o.command())
	fmt.Fprintf(out, "- machine: %d CPUs (%s), %s; default cache sizes (tokens.cache_size 10000, revocation.cache_size 100000), access log on\n",
		runtime.NumCPU(), cpuModel(), runtime.Version())
	if o.cgroupLimit > 0 {
		fmt.Fprintf(out, "- container limit: each tokengate runs in a fresh memory cgroup (a child of the run's own) with a hard limit of %d bytes and no swap, GOMEMLIMIT=%s as the Kubernetes kit sets it from limits.memory; the binary and the bolt file are dropped from the page cache before each start, so the cgroup is charged for every page tokengate reads\n",
			o.cgroupLimit, o.memLimit)
	}
	fmt.Fprintln(out)
	if o.cgroupLimit > 0 {
		fmt.Fprintln(out, "| case | RSS | anonymous (heap, stacks) | file-backed (binary, bolt's mmap) | Go heap in use | cgroup usage (anon + page cache) | cgroup peak | limit reached (reclaim) | major faults (read back from disk) | OOM kills | note |")
		fmt.Fprintln(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	} else {
		fmt.Fprintln(out, "| case | RSS | anonymous (heap, stacks) | file-backed (binary, bolt's mmap) | Go heap in use | note |")
		fmt.Fprintln(out, "|---|---:|---:|---:|---:|---|")
	}
	row := func(name string, tg *tokengateSetup, note string) {
		if tg.proc.exited() {
			note += fmt.Sprintf("; **tokengate is gone** (%v)", tg.proc.cmd.ProcessState)
		}
		st := processMem(tg.pid)
		heap := goHeap(ctx, tg.admin)
		fmt.Fprintf(out, "| %s | %.1f MB | %.1f MB | %.1f MB | %s |", name, mb(st["VmRSS"]), mb(st["RssAnon"]), mb(st["RssFile"]+st["RssShmem"]), heap)
		if cg := tg.cfg.cgroup; cg != nil {
			c := cg.stats()
			fmt.Fprintf(out, " %s (%s + %s) | %s | %s | %s | %s |", mbOrUnknown(c.usage), mbOrUnknown(c.anon), mbOrUnknown(c.file), mbOrUnknown(c.peak),
				countOrUnknown(c.limitHits), countOrUnknown(c.majFaults), countOrUnknown(c.oomKills))
			fmt.Fprintf(logw, "mem: %s: cgroup usage %s (anon %s, file %s), peak %s, limit reached %s times, %s major faults, OOM kills %s\n",
				name, mbOrUnknown(c.usage), mbOrUnknown(c.anon), mbOrUnknown(c.file), mbOrUnknown(c.peak), countOrUnknown(c.limitHits), countOrUnknown(c.majFaults), countOrUnknown(c.oomKills))
		}
		fmt.Fprintf(out, " %s |\n", note)
		fmt.Fprintf(logw, "mem: %s: RSS %.1f MB (anon %.1f, file %.1f), heap %s\n", name, mb(st["VmRSS"]), mb(st["RssAnon"]), mb(st["RssFile"]), heap)
	}
	// start starts one tokengate, in its own cgroup with -cgroup-limit.
	// Each is stopped before the next starts: a running one would keep the
	// binary's pages in memory, charged to its own cgroup.
	start := func(ic instanceConfig) (*tokengateSetup, error) {
		ic.env = env
		if o.cgroupLimit > 0 {
			cg, err := newMemCgroup(fmt.Sprintf("tokengate-loadbench-%d-%s", os.Getpid(), ic.backend), o.cgroupLimit)
			if err != nil {
				return nil, err
			}
			cgroups = append(cgroups, cg)
			ic.cgroup = cg
		}
		return startTokengate(ctx, &p, o.bin, filepath.Join(dir, ic.backend), upstream, ic)
	}
	var failures []error
	var verdicts []string
	// fill sends the revoked tokens; a failure (tokengate killed by the
	// limit, a wrong answer) is reported in the table and the run goes on.
	fill := func(tg *tokengateSetup, backend string, jtis []string, exp time.Time) {
		n, err := sendRevoked(ctx, tg, jtis, exp)
		note := fmt.Sprintf("after %d distinct revoked tokens, each sent twice (all 401 revoked)", n)
		if err != nil {
			note = fmt.Sprintf("**requests failed**: %v", err)
			failures = append(failures, fmt.Errorf("%s: %w", backend, err))
		}
		row(backend+", caches full", tg, note)
		if cg := tg.cfg.cgroup; cg != nil {
			c := cg.stats()
			answered := fmt.Sprintf("all %d requests answered 401 token_revoked", 2*n)
			if err != nil {
				answered = "not every request was answered correctly"
			}
			verdict := "within the limit"
			if err != nil || c.oomKills != 0 || tg.proc.exited() {
				verdict = "**not within the limit**"
			}
			verdicts = append(verdicts, fmt.Sprintf("%s under a %s limit: %s; %s; OOM kills %s; cgroup peak %s.",
				backend, o.cgroupFlag, verdict, answered, countOrUnknown(c.oomKills), mbOrUnknown(c.peak)))
		}
	}

	// 0. What one cache entry costs, measured in this process.
	const cacheN = 100_000
	te, re, err := cacheEntryBytes(dir, cacheN)
	if err != nil {
		return err
	}
	fmt.Fprintf(logw, "mem: %.0f B per verified-token cache entry, %.0f B per revocation cache entry\n", te, re)
	defer fmt.Fprintf(out, "\nMemory per cache entry (heap growth over %d distinct entries, measured in-process with the real packages): verified-token cache %.0f B, revocation cache %.0f B. At the default sizes: %.1f MB + %.1f MB.\n",
		cacheN, te, re, te*10000/(1<<20), re*100000/(1<<20))

	// 1. bolt (the default), idle, then with idle keep-alive connections.
	boltDir := filepath.Join(dir, "bolt")
	if err := os.Mkdir(boltDir, 0o700); err != nil {
		return err
	}
	jtis := newJTIs(o.nRev)
	exp := time.Now().Add(2 * time.Hour)
	boltFile := filepath.Join(boltDir, "revocations.db")
	layout, err := fillBolt(boltFile, jtis, exp)
	if err != nil {
		return err
	}
	fmt.Fprintf(logw, "mem: bolt %s\n", layout)
	defer fmt.Fprintf(out, "\nThe bolt file, filled one revocation per transaction as the store writes them: %s.\n", layout)
	defer func() {
		for _, v := range verdicts {
			fmt.Fprintf(out, "\n%s\n", v)
		}
	}()
	_ = dropPageCache(boltFile)
	tg, err := start(instanceConfig{name: "tokengate-bolt", algorithm: "HS256", backend: "bolt", defaultCaches: true})
	if err != nil {
		return err
	}
	row("bolt, idle after start", tg, fmt.Sprintf("%d live revocations in the bolt file (%s)", o.nRev, fileSize(boltFile)))
	held, err := holdConns(ctx, tg, o.conns)
	if err != nil {
		return err
	}
	row(fmt.Sprintf("bolt, %d idle keep-alive connections", o.conns), tg, "each sent one authenticated request, then idles")
	for _, c := range held {
		c.Close()
	}
	fill(tg, "bolt", jtis[:min(o.nReq, len(jtis))], exp)
	p.stop(tg.proc)

	// 2. Redis: the same with the revocations in Redis.
	if o.redisURL == "" {
		return errors.Join(failures...)
	}
	_, cleanup, err := fillRedis(ctx, o.redisURL, jtis, exp)
	if err != nil {
		fmt.Fprintf(out, "\nRedis case skipped: %v\n", err)
		return errors.Join(failures...)
	}
	defer cleanup()
	if err := os.Mkdir(filepath.Join(dir, "redis"), 0o700); err != nil {
		return err
	}
	tg, err = start(instanceConfig{name: "tokengate-redis", algorithm: "HS256", backend: "redis", redisURL: o.redisURL, defaultCaches: true})
	if err != nil {
		return err
	}
	row("redis, idle after start", tg, fmt.Sprintf("%d live revocations in Redis", o.nRev))
	fill(tg, "redis", jtis[:min(o.nReq, len(jtis))], exp)
	p.stop(tg.proc)
	return errors.Join(failures...)
}

func mbOrUnknown(b int64) string {
	if b < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MB", mb(b))
}

func countOrUnknown(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

// processMem reads the kB lines of /proc/PID/status (VmRSS, RssAnon,
// RssFile, RssShmem), in bytes.
func processMem(pid int) map[string]int64 {
	out := map[string]int64{}
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasSuffix(v, "kB") {
			continue
		}
		if kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64); err == nil {
			out[k] = kb << 10
		}
	}
	return out
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// goHeap is go_memstats_heap_inuse_bytes from tokengate's /metrics.
func goHeap(ctx context.Context, admin string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/metrics", nil)
	if err != nil {
		return "?"
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return fmt.Sprintf("%.1f MB", f/(1<<20))
			}
		}
	}
	return "?"
}

func fileSize(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.0f MB", float64(st.Size())/(1<<20))
}

// newJTIs makes n random jtis shaped like tokengate's.
func newJTIs(n int) []string {
	out := make([]string, n)
	b := make([]byte, 16)
	for i := range out {
		_, _ = rand.Read(b)
		out[i] = base64.RawURLEncoding.EncodeToString(b)
	}
	return out
}

// fillBolt writes the revocations with the bolt store's own layout (bucket
// tokens: jti -> exp as big-endian unix ns) and its own write pattern: one
// revocation per transaction, as each logout commits one, so the file has
// the page fill and size the store itself would give it. Without fsync: a
// million fsynced commits would take hours, and fsync changes nothing in
// the file's layout. (Large transactions would be quicker but misleading:
// each rewrites most of the tree, and the pages the last one freed stay in
// the file; 100,000-key transactions left a 146 MB file for an 84 MB tree.)
// It returns boltLayout's description of the file.
func fillBolt(path string, jtis []string, exp time.Time) (string, error) {
	st, err := revocation.OpenBoltStore(path, revocation.BoltOptions{}) // creates the buckets
	if err != nil {
		return "", err
	}
	if err := st.Close(); err != nil {
		return "", err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return "", err
	}
	defer db.Close()
	db.NoSync = true
	v := binary.BigEndian.AppendUint64(nil, uint64(exp.UnixNano()))
	for _, j := range jtis {
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("tokens"))
			if b == nil {
				return errors.New(`bolt store has no "tokens" bucket: layout changed?`)
			}
			return b.Put([]byte(j), v)
		})
		if err != nil {
			return "", err
		}
	}
	if err := db.Sync(); err != nil {
		return "", err
	}
	return boltLayout(db, path), nil
}

// boltLayout describes what a bolt file holds: its size, the pages its
// tokens bucket's B-tree takes and how full they are, and the free pages.
func boltLayout(db *bolt.DB, path string) string {
	out := "?"
	_ = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("tokens"))
		if b == nil {
			return nil
		}
		st := b.Stats()
		free := db.Stats().FreePageN + db.Stats().PendingPageN
		out = fmt.Sprintf("file %s: tokens B-tree %.0f MB (%d keys, leaf pages %.0f%% full), %.0f MB of free pages",
			fileSize(path), float64(st.LeafAlloc+st.BranchAlloc)/(1<<20), st.KeyN,
			100*float64(st.LeafInuse)/float64(max(st.LeafAlloc, 1)), float64(free*tx.DB().Info().PageSize)/(1<<20))
		return nil
	})
	return out
}

// fillRedis writes the revocations with the Redis store's layout
// (tokengate:db<N>:jti:<jti> = exp unix ns, with a TTL) in the URL's database,
// pipelined, without publishing anything; cleanup deletes exactly those keys.
func fillRedis(ctx context.Context, url string, jtis []string, exp time.Time) (*redis.Client, func(), error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, err
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, nil, err
	}
	key := func(j string) string { return revocation.DefaultRedisPrefix(opts.DB) + "jti:" + j }
	v := strconv.FormatInt(exp.UnixNano(), 10)
	ttl := time.Until(exp)
	cleanup := func() {
		for start := 0; start < len(jtis); start += 10_000 {
			keys := make([]string, 0, 10_000)
			for _, j := range jtis[start:min(start+10_000, len(jtis))] {
				keys = append(keys, key(j))
			}
			_ = rdb.Del(context.Background(), keys...).Err()
		}
		rdb.Close()
	}
	for start := 0; start < len(jtis); start += 10_000 {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, j := range jtis[start:min(start+10_000, len(jtis))] {
				p.Set(ctx, key(j), v, ttl)
			}
			return nil
		})
		if err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	return rdb, cleanup, nil
}

// holdConns opens n keep-alive connections, sends one authenticated
// request on each and keeps them open (idle).
func holdConns(ctx context.Context, tg *tokengateSetup, n int) ([]net.Conn, error) {
	host := strings.TrimPrefix(tg.public, "http://")
	req := "GET /bench HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + tg.token + "\r\n\r\n"
	var conns []net.Conn
	for range n {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, req); err != nil {
			return nil, err
		}
		// Read the answer's head and the 12-byte body.
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := 0
		for !bytes.Contains(buf[:got], upstreamBody) {
			k, err := c.Read(buf[got:])
			if err != nil {
				return nil, fmt.Errorf("idle connection %d: %w", len(conns), err)
			}
			got += k
		}
		if !bytes.HasPrefix(buf[:got], []byte("HTTP/1.1 200")) {
			return nil, fmt.Errorf("idle connection %d: %q", len(conns), buf[:min(got, 80)])
		}
	}
	time.Sleep(2 * time.Second) // let the server settle (GC, goroutines parked)
	return conns, nil
}

// sendRevoked sends two requests per jti, both with one freshly minted
// token carrying that (revoked) jti, and wants 401 revoked for every one.
// Twice: the verified-token cache admits a token on its second sighting,
// and the run is about full caches.
func sendRevoked(ctx context.Context, tg *tokengateSetup, jtis []string, exp time.Time) (int, error) {
	client := newLoadClient(8)
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(jtis); i += 8 {
				tok, err := tg.mintWithJTI(jtis[i], exp)
				if err != nil {
					errs <- err
					return
				}
				for range 2 {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tg.public+"/bench", nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					resp, err := client.Do(req)
					if err != nil {
						errs <- err
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusUnauthorized || !bytes.Contains(body, []byte("revoked")) {
						errs <- fmt.Errorf("a revoked token got %d %s (store layout changed?)", resp.StatusCode, body)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	time.Sleep(2 * time.Second)
	return len(jtis), nil
}

// cacheEntryBytes measures, in this process, the heap a cache entry costs:
// n distinct verified tokens in authn's verified-token cache, and n "not
// revoked" answers in the revocation Checker's LRU (memory store: nothing
// else grows). The strings the caller keeps (tokens, jtis) are made before
// the first reading, so only what the caches hold is counted.
func cacheEntryBytes(dir string, n int) (tokenEntry, revocationEntry float64, err error) {
	keyPath := filepath.Join(dir, "cache-bench.key")
	if err := os.WriteFile(keyPath, []byte("cache-entry-measurement-secret-0123456789"), 0o600); err != nil {
		return 0, 0, err
	}
	key, err := authn.LoadSigningKey(keyPath, "HS256")
	if err != nil {
		return 0, 0, err
	}
	// The issuer caches what it issues; a second instance (another
	// replica) starts with an empty cache.
	issuer, err := authn.NewTokens(key, nil, authn.TokenOptions{CacheSize: 1})
	if err != nil {
		return 0, 0, err
	}
	verifier, err := authn.NewTokens(key, nil, authn.TokenOptions{CacheSize: n})
	if err != nil {
		return 0, 0, err
	}
	pool := make([]string, n)
	for i := range pool {
		if pool[i], _, err = issuer.Issue("user-"+strconv.Itoa(i%1000), "user"); err != nil {
			return 0, 0, err
		}
	}
	before := heapInUse()
	for _, t := range pool {
		// Twice: the cache admits a token on its second sighting.
		for range 2 {
			if _, err := verifier.Verify(t); err != nil {
				return 0, 0, err
			}
		}
	}
	tokenEntry = float64(heapInUse()-before) / float64(n)

	checker, err := revocation.NewChecker(revocation.NewMemoryStore(nil), revocation.CheckerOptions{CacheSize: n})
	if err != nil {
		return 0, 0, err
	}
	defer checker.Close()
	jtis := newJTIs(n)
	now := time.Now()
	before = heapInUse()
	for i, j := range jtis {
		if _, err := checker.Revoked(context.Background(), j, "user-"+strconv.Itoa(i%1000), now); err != nil {
			return 0, 0, err
		}
	}
	revocationEntry = float64(heapInUse()-before) / float64(n)
	runtime.KeepAlive(pool)
	runtime.KeepAlive(verifier)
	runtime.KeepAlive(jtis)
	return tokenEntry, revocationEntry, nil
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
