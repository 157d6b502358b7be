package testsvc

import "testing"

func TestStartRedisStopRestart(t *testing.T) {
	r := StartRedis(t)
	if err := pingRedis(r.Addr, 0); err != nil && pingRedis(r.Addr, 1e9) != nil {
		t.Fatalf("fresh redis does not answer: %v", err)
	}
	r.Stop()
	if pingRedis(r.Addr, 2e8) == nil {
		t.Fatal("redis still answers after Stop")
	}
	r.Restart(t)
	if err := pingRedis(r.Addr, 1e9); err != nil {
		t.Fatalf("restarted redis does not answer: %v", err)
	}
}

func TestSharedServices(t *testing.T) {
	_ = RedisAddr(t)
	_ = PostgresURL(t)
}

func TestKeySlot(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	for key, want := range map[string]uint16{"foo": 12182, "123456789": 0x31C3, "{foo}bar": 12182, "a{}b": keySlot("a{}b")} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
}
