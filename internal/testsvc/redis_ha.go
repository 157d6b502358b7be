package testsvc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// PID is the server's process id (0 once stopped).
func (r *Redis) PID() int {
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Pause stops the server with SIGSTOP (it keeps its connections but answers
// nothing) until Resume; the test's cleanup resumes it.
func (r *Redis) Pause(t testing.TB) {
	t.Helper()
	if r.cmd == nil {
		t.Fatalf("pause %s: not running", r.Addr)
	}
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", r.Addr, err)
	}
	t.Cleanup(r.Resume)
}

// Resume sends SIGCONT; safe to call on a running or stopped server.
func (r *Redis) Resume() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// role is the server's ROLE ("master", "slave"), "" if it does not answer.
func (r *Redis) role(ctx context.Context) string {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(v) == 0 {
		return ""
	}
	role, _ := v[0].(string)
	return role
}

// linkUp reports whether a replica's link to its primary is up.
func (r *Redis) linkUp(ctx context.Context) bool {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	return err == nil && strings.Contains(info, "master_link_status:up")
}

func countNodes(slots []slotRange) int {
	seen := map[string]bool{}
	for _, s := range slots {
		for _, n := range s.Nodes {
			seen[n] = true
		}
	}
	return len(seen)
}

// Running reports whether the server was not stopped.
func (r *Redis) Running() bool { return r.cmd != nil }

// Client is a plain client to this one server, closed when the test ends.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func needBinaries(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			unavailable(t, "%s not installed (Debian package redis-server / redis-sentinel)", n)
		}
	}
}

// RedisCluster is a private Redis Cluster: three primaries with one
// replica each, on loopback ports, stopped when the test ends. The node
// timeout is 1s, so a killed primary's replica is promoted within seconds.
type RedisCluster struct {
	Nodes []*Redis
}

// StartRedisCluster starts six cluster-enabled redis-servers and joins them
// with `redis-cli --cluster create ... --cluster-replicas 1`.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	needBinaries(t, "redis-server", "redis-cli")
	c := &RedisCluster{}
	for range 6 {
		n := StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--cluster-port", strconv.Itoa(freePort(t)),
			"--cluster-replica-validity-factor", "0", "--repl-diskless-sync", "yes",
			"--repl-diskless-sync-delay", "0")
		c.Nodes = append(c.Nodes, n)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(t, 60*time.Second)
	return c
}

// Addrs lists every node (seed addresses for a cluster client).
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Node returns the node listening on addr.
func (c *RedisCluster) Node(t testing.TB, addr string) *Redis {
	t.Helper()
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	t.Fatalf("no cluster node %s", addr)
	return nil
}

// slotRange is a range of slots and the nodes serving it: the primary
// first ("" when no online primary), then the online replicas.
type slotRange struct {
	Start, End int
	Nodes      []string
}

// clusterSlots reads one node's view of the slot map (CLUSTER SHARDS).
func clusterSlots(ctx context.Context, cl *redis.Client) ([]slotRange, error) {
	shards, err := cl.ClusterShards(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []slotRange
	for _, sh := range shards {
		primary, replicas := "", []string(nil)
		for _, n := range sh.Nodes {
			if n.Health != "online" {
				continue
			}
			addr := net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
			if n.Role == "master" {
				primary = addr
			} else {
				replicas = append(replicas, addr)
			}
		}
		slices.Sort(replicas)
		for _, r := range sh.Slots {
			out = append(out, slotRange{int(r.Start), int(r.End), append([]string{primary}, replicas...)})
		}
	}
	// Each node lists the shards in its own order.
	slices.SortFunc(out, func(a, b slotRange) int { return a.Start - b.Start })
	return out, nil
}

// slots asks a running node for the slot map.
func (c *RedisCluster) slots(ctx context.Context) ([]slotRange, error) {
	var last error
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, MaxRetries: -1})
		s, err := clusterSlots(ctx, cl)
		_ = cl.Close()
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, fmt.Errorf("no node answered CLUSTER SHARDS: %v", last)
}

// PrimaryFor returns the address of the primary serving key (or a sharded
// channel name) and of its replicas, as the cluster sees it now.
func (c *RedisCluster) PrimaryFor(t testing.TB, key string) (primary string, replicas []string) {
	t.Helper()
	ctx := context.Background()
	slot := keySlot(key)
	s, err := c.slots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s {
		if int(slot) >= r.Start && int(slot) <= r.End {
			return r.Nodes[0], r.Nodes[1:]
		}
	}
	t.Fatalf("slot %d of %q not served", slot, key)
	return "", nil
}

// WaitHealthy waits until every running node says cluster_state:ok and every
// slot's primary is a running node that every running node agrees on.
func (c *RedisCluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for {
		why = c.unhealthy()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not healthy within %s: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *RedisCluster) unhealthy() string {
	ctx := context.Background()
	running := map[string]bool{}
	for _, n := range c.Nodes {
		if n.Running() {
			running[n.Addr] = true
		}
	}
	var view string
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, MaxRetries: -1})
		info, err := cl.ClusterInfo(ctx).Result()
		var slots []slotRange
		if err == nil {
			slots, err = clusterSlots(ctx, cl)
		}
		_ = cl.Close()
		if err != nil {
			return n.Addr + ": " + err.Error()
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return n.Addr + ": cluster_state not ok"
		}
		covered := 0
		var b strings.Builder
		for _, s := range slots {
			if !running[s.Nodes[0]] {
				return fmt.Sprintf("%s: slots %d-%d on %q, not a running primary", n.Addr, s.Start, s.End, s.Nodes[0])
			}
			covered += s.End - s.Start + 1
			fmt.Fprintf(&b, "%d-%d=%s;", s.Start, s.End, s.Nodes[0])
		}
		if covered != 16384 {
			return fmt.Sprintf("%s: %d slots covered", n.Addr, covered)
		}
		if listed := countNodes(slots); listed != len(running) {
			return fmt.Sprintf("%s: %d nodes serve slots, %d running", n.Addr, listed, len(running))
		}
		if n.role(ctx) == "slave" && !n.linkUp(ctx) {
			return n.Addr + ": replica not in sync"
		}
		if view == "" {
			view = b.String()
		} else if view != b.String() {
			return "nodes disagree on the slot map"
		}
	}
	return ""
}

// RedisSentinel is a private Sentinel setup: a primary, one replica and
// three redis-sentinel processes (quorum 2, down after 1s).
type RedisSentinel struct {
	MasterName string
	Servers    []*Redis // the primary first, then the replica (roles change on failover)
	Sentinels  []*Redis
}

// StartRedisSentinel starts the servers and sentinels and waits until every
// sentinel knows the replica and the other sentinels.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	needBinaries(t, "redis-server", "redis-sentinel")
	s := &RedisSentinel{MasterName: "tgmaster"}
	primary := StartRedis(t, "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
	replica := StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port),
		"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
	s.Servers = []*Redis{primary, replica}
	for range 3 {
		s.Sentinels = append(s.Sentinels, startSentinel(t, s.MasterName, primary.Port))
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, sn := range s.Sentinels {
		cl := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr})
		for {
			reps, err1 := cl.Replicas(ctx, s.MasterName).Result()
			sens, err2 := cl.Sentinels(ctx, s.MasterName).Result()
			if err1 == nil && err2 == nil && len(reps) == 1 && len(sens) == 2 {
				break
			}
			if time.Now().After(deadline) {
				_ = cl.Close()
				t.Fatalf("sentinel %s does not see the replica and the other sentinels (replicas %d %v, sentinels %d %v)", sn.Addr, len(reps), err1, len(sens), err2)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = cl.Close()
	}
	return s
}

func startSentinel(t testing.TB, master string, primaryPort int) *Redis {
	t.Helper()
	r := &Redis{dir: t.TempDir()}
	r.Port = freePort(t)
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
	conf := filepath.Join(r.dir, "sentinel.conf")
	text := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
sentinel parallel-syncs %s 1
`, r.Port, r.dir, filepath.Join(r.dir, "sentinel.log"), master, primaryPort, master, master, master)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command("redis-sentinel", conf)
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-sentinel: %v", err)
	}
	t.Cleanup(r.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for pingRedis(r.Addr, 200*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-sentinel on %s did not answer within 10s", r.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// SentinelAddrs lists the sentinels' addresses.
func (s *RedisSentinel) SentinelAddrs() []string {
	var addrs []string
	for _, sn := range s.Sentinels {
		addrs = append(addrs, sn.Addr)
	}
	return addrs
}

// Primary returns the server every sentinel names as the primary, waiting up
// to timeout for them to agree on a running server (after a failover).
func (s *RedisSentinel) Primary(t testing.TB, timeout time.Duration) *Redis {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		var addr string
		agree := true
		for _, sn := range s.Sentinels {
			cl := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, MaxRetries: -1})
			a, err := cl.GetMasterAddrByName(ctx, s.MasterName).Result()
			_ = cl.Close()
			if err != nil || len(a) != 2 || (addr != "" && addr != net.JoinHostPort(a[0], a[1])) {
				agree = false
				break
			}
			addr = net.JoinHostPort(a[0], a[1])
		}
		if agree {
			for _, r := range s.Servers {
				if r.Addr == addr && r.Running() && r.role(ctx) == "master" {
					return r
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinels do not agree on a running primary within %s (last %q)", timeout, addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Replica returns a running server other than primary.
func (s *RedisSentinel) Replica(t testing.TB, primary *Redis) *Redis {
	t.Helper()
	for _, r := range s.Servers {
		if r != primary && r.Running() {
			return r
		}
	}
	t.Fatal("no running replica")
	return nil
}

// keySlot is Redis Cluster's CRC16 slot of key (hash tags honoured).
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}
