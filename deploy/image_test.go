package deploy

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"tokengate/deploy/image"
)

// readLayout opens the single image of an OCI layout and checks it is
// tagged as umoci and other tools will look for it.
func readLayout(t *testing.T, dir string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != image.RefName {
		t.Fatalf("layout index %+v: want one manifest tagged %q", m.Manifests, image.RefName)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// rootfsEntries flattens the image's layers into path -> tar header.
func rootfsEntries(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out["/"+strings.Trim(h.Name, "/")] = h
	}
}

// TestImageMatchesDockerfile: the daemonless image and the Dockerfile's
// final stage say the same user, entrypoint, command, ports, volume and
// labels, and put the same files at the same paths with the same owners.
func TestImageMatchesDockerfile(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tokengate")
	if err := os.WriteFile(bin, []byte("not run by this test"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "image")
	if _, err := image.Build(image.Options{Binary: bin, Out: out, Version: "v9.8.7"}); err != nil {
		t.Fatal(err)
	}
	img := readLayout(t, out)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	files := rootfsEntries(t, img)

	ins := parseDockerfile(t, "../Dockerfile")
	last := ins[len(ins)-1].stage
	final := map[string][]string{}
	for _, in := range ins {
		if in.stage == last {
			final[in.cmd] = append(final[in.cmd], in.args)
		}
	}
	jsonArray := func(cmd string) []string {
		var v []string
		if len(final[cmd]) != 1 || json.Unmarshal([]byte(final[cmd][0]), &v) != nil {
			t.Fatalf("Dockerfile %s %v: want one exec-form array", cmd, final[cmd])
		}
		return v
	}

	if len(final["USER"]) != 1 || final["USER"][0] != cf.Config.User {
		t.Errorf("USER: Dockerfile %v, image %q", final["USER"], cf.Config.User)
	}
	if e := jsonArray("ENTRYPOINT"); !slices.Equal(e, cf.Config.Entrypoint) {
		t.Errorf("ENTRYPOINT: Dockerfile %v, image %v", e, cf.Config.Entrypoint)
	}
	if c := jsonArray("CMD"); !slices.Equal(c, cf.Config.Cmd) {
		t.Errorf("CMD: Dockerfile %v, image %v", c, cf.Config.Cmd)
	}
	var dockerPorts, imagePorts []string
	for _, e := range final["EXPOSE"] {
		for _, p := range strings.Fields(e) {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			dockerPorts = append(dockerPorts, p)
		}
	}
	for p := range cf.Config.ExposedPorts {
		imagePorts = append(imagePorts, p)
	}
	slices.Sort(dockerPorts)
	slices.Sort(imagePorts)
	if !slices.Equal(dockerPorts, imagePorts) || len(imagePorts) == 0 {
		t.Errorf("EXPOSE: Dockerfile %v, image %v", dockerPorts, imagePorts)
	}
	var vols []string
	for p := range cf.Config.Volumes {
		vols = append(vols, p)
	}
	if v := jsonArray("VOLUME"); !slices.Equal(v, vols) {
		t.Errorf("VOLUME: Dockerfile %v, image %v", v, vols)
	}
	labelRE := regexp.MustCompile(`([A-Za-z0-9_.-]+)="([^"]*)"`)
	dockerLabels := map[string]string{}
	for _, l := range final["LABEL"] {
		for _, m := range labelRE.FindAllStringSubmatch(l, -1) {
			dockerLabels[m[1]] = strings.ReplaceAll(m[2], "${VERSION}", "v9.8.7")
		}
	}
	if len(dockerLabels) == 0 || !equalMaps(dockerLabels, cf.Config.Labels) {
		t.Errorf("LABEL: Dockerfile %v, image %v", dockerLabels, cf.Config.Labels)
	}

	// Every COPY of the final stage lands at the same path, same owner.
	copies := 0
	for _, c := range final["COPY"] {
		f := strings.Fields(c)
		dest := f[len(f)-1]
		uid, gid := 0, 0
		for _, flag := range f {
			if owner, ok := strings.CutPrefix(flag, "--chown="); ok {
				u, g, _ := strings.Cut(owner, ":")
				uid, _ = strconv.Atoi(u)
				gid, _ = strconv.Atoi(g)
			}
		}
		h, ok := files[dest]
		if !ok {
			t.Errorf("Dockerfile COPY to %s: the image has no %s", dest, dest)
			continue
		}
		copies++
		if h.Uid != uid || h.Gid != gid {
			t.Errorf("%s: image owner %d:%d, Dockerfile %d:%d", dest, h.Uid, h.Gid, uid, gid)
		}
	}
	if copies == 0 {
		t.Error("the Dockerfile's final stage copies nothing the image has")
	}
	if h, ok := files[cf.Config.Entrypoint[0]]; !ok || h.Mode&0o111 == 0 {
		t.Errorf("entrypoint %s is not an executable file in the image", cf.Config.Entrypoint[0])
	}
	// What distroless's nonroot base gives the Dockerfile, the local base gives too.
	for _, p := range []string{"/etc/passwd", "/etc/group", image.CACertPath, "/tmp"} {
		if _, ok := files[p]; !ok {
			t.Errorf("the image has no %s (distroless static has it)", p)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestImageBuildAndRun builds the image as `make image` does, checks its
// config, unpacks it with umoci and runs the binary from the unpacked
// root filesystem, chrooted, as uid/gid 65532.
func TestImageBuildAndRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the tokengate binary and the image")
	}
	// CI (TOKENGATE_TEST_REQUIRE_SERVICES=1) runs as root with umoci installed: fail there rather than skip.
	skip := t.Skip
	if os.Getenv("TOKENGATE_TEST_REQUIRE_SERVICES") == "1" {
		skip = t.Fatal
	}
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		skip("umoci not installed (apt-get install umoci; .ci/run installs it)")
	}
	if os.Geteuid() != 0 {
		skip("needs root: umoci keeps the layers' owners and chroot needs CAP_SYS_CHROOT")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "tokengate")
	const version = "v0.0.0-imagetest"
	build := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+version+" -X main.commit=imagetest", "-o", bin, "./cmd/tokengate")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := filepath.Join(tmp, "image")
	if _, err := image.Build(image.Options{Binary: bin, Out: out, Version: version, Arch: runtime.GOARCH}); err != nil {
		t.Fatal(err)
	}
	// A second build over the first replaces it (make image twice) and,
	// with the same inputs, gives the same digest.
	d1, _ := readLayout(t, out).Digest()
	if _, err := image.Build(image.Options{Binary: bin, Out: out, Version: version, Arch: runtime.GOARCH}); err != nil {
		t.Fatal(err)
	}
	img := readLayout(t, out)
	if d2, _ := img.Digest(); d1 != d2 {
		t.Errorf("rebuilding the same inputs changed the digest: %s then %s", d1, d2)
	}

	t.Run("config", func(t *testing.T) {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		if c.User != "65532:65532" {
			t.Errorf("user %q: want numeric non-root 65532:65532", c.User)
		}
		if !slices.Equal(c.Entrypoint, []string{"/tokengate"}) ||
			!slices.Equal(c.Cmd, []string{"serve", "--config", "/etc/tokengate/config.yaml"}) {
			t.Errorf("entrypoint %v cmd %v", c.Entrypoint, c.Cmd)
		}
		for _, p := range []string{"8081/tcp", "9091/tcp"} {
			if _, ok := c.ExposedPorts[p]; !ok {
				t.Errorf("port %s not exposed: %v", p, c.ExposedPorts)
			}
		}
		if c.Labels["org.opencontainers.image.version"] != version || c.Labels["org.opencontainers.image.title"] != "tokengate" {
			t.Errorf("labels %v", c.Labels)
		}
		if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
			t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
		}
	})

	bundle := filepath.Join(tmp, "bundle")
	if out, err := exec.Command(umoci, "unpack", "--image", out+":"+image.RefName, bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	rootfs := filepath.Join(bundle, "rootfs")

	t.Run("rootfs", func(t *testing.T) {
		f, err := elf.Open(filepath.Join(rootfs, "tokengate"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		libs, _ := f.ImportedLibraries()
		if f.Section(".interp") != nil || len(libs) > 0 {
			t.Errorf("/tokengate is dynamically linked (%v): the image has no libc", libs)
		}
		fi, err := os.Stat(filepath.Join(rootfs, "var/lib/tokengate"))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); !fi.IsDir() || st.Uid != image.UID || st.Gid != image.GID {
			t.Errorf("/var/lib/tokengate: dir %v owner %d:%d, want a directory owned by 65532", fi.IsDir(), st.Uid, st.Gid)
		}
		pem, err := os.ReadFile(filepath.Join(rootfs, "etc/ssl/certs/ca-certificates.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			t.Error("the CA bundle holds no certificate")
		}
		passwd, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
		group, _ := os.ReadFile(filepath.Join(rootfs, "etc/group"))
		if !bytes.Contains(passwd, []byte(":x:65532:65532:")) || !bytes.Contains(group, []byte(":x:65532:")) {
			t.Errorf("passwd/group lack the 65532 user:\n%s\n%s", passwd, group)
		}
	})

	// The kit's config, mounted where the Deployment mounts it.
	kitCfg, err := os.ReadFile("kubernetes/base/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "etc/tokengate"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/tokengate/config.yaml"), kitCfg, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		cmd := exec.Command("/tokengate", args...)
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Chroot:     rootfs,
			Credential: &syscall.Credential{Uid: image.UID, Gid: image.GID, Groups: []uint32{}},
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chroot %s /tokengate %v as 65532: %v\n%s%s", rootfs, args, err, stdout.String(), stderr.String())
		}
		return stdout.String() + stderr.String()
	}
	t.Run("version as 65532", func(t *testing.T) {
		if out := run(t, "version"); !strings.Contains(out, "tokengate "+version+" (commit imagetest") {
			t.Errorf("version printed %q", out)
		}
	})
	t.Run("check-config as 65532", func(t *testing.T) {
		if out := run(t, "check-config", "--config-only", "--config", image.ConfigPath); !strings.Contains(out, "configuration OK") {
			t.Errorf("check-config printed %q", out)
		}
	})
}
