package authn

import (
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// tokengate_users_last_reload_success stays 0 while a broken users file is
// in place, whether SIGHUP (Reload) or the watcher found it, and returns to
// 1 with the next good version: what the users-reload alert holds on to.
func TestUsersLastReloadSuccessGauge(t *testing.T) {
	const help = "# HELP tokengate_users_last_reload_success 1 when the last users file reload (watched or SIGHUP) succeeded or none failed since start, else 0.\n# TYPE tokengate_users_last_reload_success gauge\n"
	path := writeFile(t, usersYAML(userEntry("a", marcoHash, "")))
	r := prometheus.NewRegistry()
	f, err := LoadFileUsers(path, FileUsersOptions{Registerer: r})
	if err != nil {
		t.Fatal(err)
	}
	check := func(v string) {
		t.Helper()
		wantMetrics(t, r, help+"tokengate_users_last_reload_success "+v+"\n", "tokengate_users_last_reload_success")
	}
	check("1") // the first load succeeded

	if err := os.WriteFile(path, []byte("users: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f.Reload() == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	check("0")
	if err := os.WriteFile(path, []byte(usersYAML(userEntry("a", marcoHash, ""))), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	check("1")

	// The watcher: a broken version sets 0 and keeps it over later polls.
	watch(t, f)
	replaceFile(t, path, usersYAML(userEntry("c", "", "")), time.Now())
	waitFor(t, "the broken version to be reported", func() bool { return gaugeValue(t, r) == 0 })
	replaceFile(t, path, usersYAML(userEntry("b", marcoHash, "")), time.Now())
	waitFor(t, "user b", func() bool { return hasUser(f, "b") })
	check("1")
}

func gaugeValue(t *testing.T, r *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := r.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "tokengate_users_last_reload_success" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("tokengate_users_last_reload_success is not registered")
	return -1
}
