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
