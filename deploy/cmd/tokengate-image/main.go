// Command tokengate-image builds tokengate's container image without a
// Docker daemon: `make image` runs it on the binary `make build` made and
// writes an OCI image layout (bin/image/ unless IMAGE_OUT says otherwise).
//
//	go run ./cmd/tokengate-image -binary ../bin/tokengate -out ../bin/image -version v1.2.3
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"tokengate/deploy/image"
)

func main() {
	var o image.Options
	flag.StringVar(&o.Binary, "binary", "../bin/tokengate", "the static tokengate binary (CGO_ENABLED=0)")
	flag.StringVar(&o.Out, "out", "../bin/image", "OCI image layout directory to write (a previous layout there is replaced)")
	flag.StringVar(&o.Version, "version", "dev", "org.opencontainers.image.version label")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "architecture the binary was built for")
	flag.StringVar(&o.CACerts, "ca-certs", image.CACertPath, "PEM bundle of CA certificates to ship")
	flag.Parse()
	digest, err := image.Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokengate-image:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %s:%s (%s)\n", "tokengate-image", o.Out, image.RefName, digest)
}
