// Package image builds tokengate's container image without a Docker
// daemon or a registry: an empty base plus locally made layers (CA
// certificates, passwd/group for the non-root user, the data directory)
// and the static binary, written as an OCI image layout.
//
// The result matches the Dockerfile's final stage (user, paths, entrypoint,
// command, ports, volume, labels); a test in this module checks both agree.
package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image is made of. The Dockerfile's final stage says the same.
const (
	UID        = 65532
	GID        = 65532
	User       = "65532:65532"
	BinaryPath = "/tokengate"
	DataDir    = "/var/lib/tokengate"
	CACertPath = "/etc/ssl/certs/ca-certificates.crt"
	ConfigPath = "/etc/tokengate/config.yaml"
	// RefName is the tag the image carries in the layout's index
	// (org.opencontainers.image.ref.name): `umoci unpack --image DIR:latest`.
	RefName = "latest"
)

var (
	Entrypoint = []string{BinaryPath}
	Cmd        = []string{"serve", "--config", ConfigPath}
	// Ports: 8081 public (proxy, login), 9091 admin (metrics, probes).
	Ports = []string{"8081/tcp", "9091/tcp"}
)

// Options say what to build. Binary and Out are required.
type Options struct {
	// Binary is the static tokengate binary (CGO_ENABLED=0), built for Arch.
	Binary string
	// Out is the OCI image layout directory. It is replaced if it already
	// holds a layout; any other non-empty directory is refused.
	Out string
	// Version goes into the org.opencontainers.image.version label ("dev" if empty).
	Version string
	// Arch is the GOARCH the binary was built for ("amd64" if empty).
	Arch string
	// CACerts is the PEM bundle to ship ("/etc/ssl/certs/ca-certificates.crt" if empty).
	CACerts string
	// Created stamps the config and every file; the zero value means the
	// Unix epoch, so the same inputs give the same digest.
	Created time.Time
}

// Build writes the image to o.Out and returns its manifest digest.
func Build(o Options) (v1.Hash, error) {
	if o.Binary == "" || o.Out == "" {
		return v1.Hash{}, errors.New("image: Binary and Out are required")
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	if o.CACerts == "" {
		o.CACerts = CACertPath
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0).UTC()
	}
	img, err := assemble(o)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := clearLayout(o.Out); err != nil {
		return v1.Hash{}, err
	}
	p, err := layout.Write(o.Out, empty.Index)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image: write layout: %w", err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": RefName,
	})); err != nil {
		return v1.Hash{}, fmt.Errorf("image: write layout: %w", err)
	}
	return img.Digest()
}

func assemble(o Options) (v1.Image, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("image: binary: %w", err)
	}
	certs, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("image: CA certificates: %w", err)
	}
	base, err := layer(o.Created, []entry{
		dir("etc", 0, 0, 0o755),
		file("etc/passwd", 0, 0, 0o644, []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n"+
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"+
				"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")),
		file("etc/group", 0, 0, 0o644, []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")),
		dir("etc/ssl", 0, 0, 0o755),
		dir("etc/ssl/certs", 0, 0, 0o755),
		file(CACertPath[1:], 0, 0, 0o644, certs),
		dir("home", 0, 0, 0o755),
		dir("home/nonroot", UID, GID, 0o700),
		dir("root", 0, 0, 0o700),
		dir("tmp", 0, 0, 0o1777),
		dir("var", 0, 0, 0o755),
		dir("var/lib", 0, 0, 0o755),
	})
	if err != nil {
		return nil, err
	}
	app, err := layer(o.Created, []entry{
		file(BinaryPath[1:], 0, 0, 0o755, bin),
		dir(DataDir[1:], UID, GID, 0o755),
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1),
		mutate.Addendum{Layer: base, History: v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "tokengate-image: base (CA certificates, passwd, group)"}},
		mutate.Addendum{Layer: app, History: v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "tokengate-image: " + BinaryPath + " and " + DataDir}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = o.Arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: o.Created}
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: Entrypoint,
		Cmd:        Cmd,
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=" + CACertPath},
		Volumes:    map[string]struct{}{DataDir: {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "tokengate",
			"org.opencontainers.image.description": "Reverse-proxy authentication sidecar",
			"org.opencontainers.image.version":     o.Version,
		},
		ExposedPorts: map[string]struct{}{},
	}
	for _, p := range Ports {
		cf.Config.ExposedPorts[p] = struct{}{}
	}
	return mutate.ConfigFile(img, cf)
}

// clearLayout makes out ready for a new layout: absent or empty is fine, a
// previous layout is removed, anything else is left alone and refused.
func clearLayout(out string) error {
	ents, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) || err == nil && len(ents) == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if _, err := os.Stat(filepath.Join(out, "oci-layout")); err != nil {
		return fmt.Errorf("image: %s is not empty and holds no OCI layout: refusing to replace it", out)
	}
	return os.RemoveAll(out)
}

type entry struct {
	hdr  tar.Header
	body []byte
}

func dir(name string, uid, gid int, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Uid: uid, Gid: gid, Mode: mode}}
}

func file(name string, uid, gid int, mode int64, body []byte) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Uid: uid, Gid: gid, Mode: mode, Size: int64(len(body))}, body: body}
}

// layer packs entries into one gzip OCI layer with fixed times and no
// user or group names, so equal inputs make equal digests.
func layer(created time.Time, ents []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		h.ModTime = created
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
