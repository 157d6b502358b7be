package deploy

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
	stage     int // index of the FROM it belongs to
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	stage := -1
	var cur strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd: cmd, args: strings.TrimSpace(args), stage: stage})
	}
	return out
}

// varRef matches $(X), ${X} and $X so Makefile and shell spellings compare equal.
var varRef = regexp.MustCompile(`\$[({]?([A-Za-z_][A-Za-z0-9_]*)[)}]?`)

func normalizeVars(s string) string { return varRef.ReplaceAllString(s, "$$$1") }

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "../Dockerfile")
	last := ins[len(ins)-1].stage
	var froms, finals []instruction
	var build string
	for _, in := range ins {
		if in.cmd == "FROM" {
			froms = append(froms, in)
		}
		if in.stage == last {
			finals = append(finals, in)
		}
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	get := func(cmd string) []string {
		var v []string
		for _, in := range finals {
			if in.cmd == cmd {
				v = append(v, in.args)
			}
		}
		return v
	}

	t.Run("builder is golang 1.26 by tag", func(t *testing.T) {
		if !strings.HasPrefix(froms[0].args, "golang:1.26") {
			t.Errorf("first FROM = %q, want golang:1.26...", froms[0].args)
		}
	})
	t.Run("runtime is distroless static or scratch", func(t *testing.T) {
		img := strings.Fields(froms[len(froms)-1].args)[0]
		if !strings.HasPrefix(img, "gcr.io/distroless/static") && img != "scratch" {
			t.Errorf("runtime image = %q", img)
		}
	})
	t.Run("static trimmed build", func(t *testing.T) {
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-o /out/tokengate ./cmd/tokengate"} {
			if !strings.Contains(build, want) {
				t.Errorf("go build step %q lacks %q", build, want)
			}
		}
	})
	t.Run("ldflags match the Makefile", func(t *testing.T) {
		mk, err := os.ReadFile("../Makefile")
		if os.IsNotExist(err) {
			t.Skip("no Makefile yet")
		}
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^LDFLAGS\s*:?=\s*(.+)$`).FindSubmatch(mk)
		if m == nil {
			t.Fatal("Makefile has no LDFLAGS")
		}
		d := regexp.MustCompile(`-ldflags "([^"]*)"`).FindStringSubmatch(build)
		if d == nil {
			t.Fatalf("go build step %q has no -ldflags \"...\"", build)
		}
		if got, want := normalizeVars(d[1]), normalizeVars(strings.TrimSpace(string(m[1]))); got != want {
			t.Errorf("Dockerfile ldflags %q != Makefile LDFLAGS %q", got, want)
		}
		if !strings.Contains(d[1], "-X main.version=") || !strings.Contains(d[1], "-X main.commit=") {
			t.Errorf("ldflags %q must stamp main.version and main.commit", d[1])
		}
	})
	t.Run("modules are downloaded before the sources are copied", func(t *testing.T) {
		order := []string{}
		for _, in := range ins {
			switch {
			case in.cmd == "COPY" && strings.HasPrefix(in.args, "go.mod go.sum"):
				order = append(order, "mod")
			case in.cmd == "RUN" && strings.Contains(in.args, "go mod download"):
				order = append(order, "download")
			case in.cmd == "COPY" && strings.HasPrefix(in.args, ". "):
				order = append(order, "src")
			}
		}
		if strings.Join(order, ",") != "mod,download,src" {
			t.Errorf("layer order %v, want go.mod/go.sum, go mod download, then sources", order)
		}
	})
	t.Run("numeric non-root user", func(t *testing.T) {
		users := get("USER")
		if len(users) != 1 {
			t.Fatalf("final stage USER = %v, want one", users)
		}
		uid, gid, _ := strings.Cut(users[0], ":")
		u, err1 := strconv.Atoi(uid)
		_, err2 := strconv.Atoi(gid)
		if err1 != nil || err2 != nil || u == 0 {
			t.Errorf("USER %q must be numeric uid:gid, not root", users[0])
		}
		if u != nonRootUID {
			t.Errorf("USER uid %d != the manifests' runAsUser %d", u, nonRootUID)
		}
	})
	t.Run("entrypoint, command and ports agree with the Deployment", func(t *testing.T) {
		var entry, cmd []string
		if e := get("ENTRYPOINT"); len(e) != 1 || json.Unmarshal([]byte(e[0]), &entry) != nil {
			t.Fatalf("ENTRYPOINT %v must be one exec-form (JSON) array", e)
		}
		if c := get("CMD"); len(c) != 1 || json.Unmarshal([]byte(c[0]), &cmd) != nil {
			t.Fatalf("CMD %v must be one exec-form (JSON) array", c)
		}
		if strings.Join(entry, " ") != "/tokengate" {
			t.Errorf("ENTRYPOINT = %v", entry)
		}
		b := load(t, "kubernetes/base")
		var tg corev1.Container
		for _, c := range b.deployments[0].Spec.Template.Spec.Containers {
			if c.Name == sidecarName {
				tg = c
			}
		}
		if strings.Join(cmd, " ") != strings.Join(tg.Args, " ") {
			t.Errorf("CMD %v != Deployment args %v", cmd, tg.Args)
		}
		var ports []string
		for _, p := range tg.Ports {
			ports = append(ports, strconv.Itoa(int(p.ContainerPort)))
		}
		if e := get("EXPOSE"); len(e) != 1 || e[0] != strings.Join(ports, " ") {
			t.Errorf("EXPOSE %v != Deployment containerPorts %v", e, ports)
		}
		if v := get("VOLUME"); len(v) != 1 || !strings.Contains(v[0], `"/var/lib/tokengate"`) {
			t.Errorf("VOLUME = %v, want [\"/var/lib/tokengate\"]", v)
		}
	})
}

// dockerignore reports whether .dockerignore excludes path (slash form),
// following Docker's rules closely enough for these patterns: the last
// matching line wins, "!" re-includes, "**" spans directories, and a
// pattern that matches a directory excludes what is under it.
type dockerignore []struct {
	re     *regexp.Regexp
	negate bool
}

func loadDockerignore(t *testing.T, path string) dockerignore {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dockerignore
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		line = strings.Trim(strings.TrimPrefix(line, "!"), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case line[i] == '*':
				re.WriteString("[^/]*")
			case line[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(line[i : i+1]))
			}
		}
		re.WriteString("(/.*)?$")
		d = append(d, struct {
			re     *regexp.Regexp
			negate bool
		}{regexp.MustCompile(re.String()), neg})
	}
	return d
}

func (d dockerignore) excludes(path string) bool {
	excluded := false
	for _, p := range d {
		if p.re.MatchString(path) {
			excluded = !p.negate
		}
	}
	return excluded
}

func TestDockerignore(t *testing.T) {
	d := loadDockerignore(t, "../.dockerignore")
	t.Run("secrets, data and history stay out", func(t *testing.T) {
		for _, p := range []string{
			".git/config", "data/signing.key", "data/revocations.db", "signing.key", "cmd/tokengate/x.key",
			"tls/server.pem", "users.yaml", "x/users.yaml", "bin/tokengate", "state.db", "deploy/go.mod",
			"deploy/kubernetes/base/config.yaml", "proxy/proxy_test.go", ".env",
		} {
			if !d.excludes(p) {
				t.Errorf("%s is sent to the build context", p)
			}
		}
	})
	t.Run("every source the binary needs goes in", func(t *testing.T) {
		need := []string{"go.mod", "go.sum"}
		err := filepath.WalkDir("..", func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel("..", p)
			rel = filepath.ToSlash(rel)
			if e.IsDir() {
				// .git and other modules (deploy/) are not the binary's.
				if _, err := os.Stat(filepath.Join(p, "go.mod")); rel == ".git" || (rel != "." && err == nil) {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") && !strings.Contains(rel, "testdata/") {
				need = append(need, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(need) < 5 {
			t.Fatalf("found only %v: is this the repository?", need)
		}
		for _, p := range need {
			if d.excludes(p) {
				t.Errorf("%s is excluded from the build context but the build needs it", p)
			}
		}
	})
	t.Run("the matcher itself", func(t *testing.T) {
		for _, tc := range []struct {
			pats []string
			path string
			want bool
		}{
			{[]string{"*.db"}, "a.db", true},
			{[]string{"*.db"}, "x/a.db", false},
			{[]string{"**/*.db"}, "x/y/a.db", true},
			{[]string{"data"}, "data/x/y", true},
			{[]string{"data"}, "database.go", false},
			{[]string{"**/*.key", "!keep.key"}, "keep.key", false},
		} {
			dir := t.TempDir()
			_ = os.WriteFile(filepath.Join(dir, "i"), []byte(strings.Join(tc.pats, "\n")), 0o600)
			m := loadDockerignore(t, filepath.Join(dir, "i"))
			if got := m.excludes(tc.path); got != tc.want {
				t.Errorf("%v excludes %s = %v, want %v", tc.pats, tc.path, got, tc.want)
			}
		}
	})
}
