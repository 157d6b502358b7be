package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tokengate/internal/testsvc"
)

// readmeBlock returns the first ```sh block of README.md after marker.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("README.md has no %q", marker)
	}
	j := strings.Index(s[i:], "```sh\n")
	if j < 0 {
		t.Fatalf("no sh block after %q", marker)
	}
	block := s[i+j+len("```sh\n"):]
	return block[:strings.Index(block, "```")]
}

// The README's curl examples run as written against `make demo` (only the
// address is changed, to the test's free port). httpie lines run when
// httpie is installed (CI installs it), with --ignore-stdin as the README
// says scripts need: the test's stdin is not a terminal, and httpie would
// otherwise read it as the request body and refuse the key=value items.
func TestREADMEExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	_, httpieErr := exec.LookPath("http")
	if httpieErr != nil && testsvc.Required() {
		t.Fatal("httpie is not installed (Debian package httpie): the README's httpie lines cannot run (TOKENGATE_TEST_REQUIRE_SERVICES=1)")
	}
	for _, tc := range []struct {
		marker string
		want   []string // in the output, in order
	}{
		{"### Try it: the demo with httpie or curl", []string{`"user_id": "marco"`, `"error":"missing_token"`, "HTTP/1.1 204", `"error":"token_revoked"`}},
		{"curl needs\nthe full URL", []string{`"username":"marco"`, "204\n", "204\n", `"keys":[`}},
	} {
		if httpieErr == nil && tc.marker[0] != '#' {
			// The httpie lines' answers: the login's token first, the
			// registration's 404 (the demo has it off) before the JWKS.
			tc.want = append([]string{`"token"`}, tc.want...)
			tc.want = append(tc.want[:len(tc.want)-1], `"error":"not_found"`, tc.want[len(tc.want)-1])
		}
		t.Run(strings.Fields(tc.marker)[0], func(t *testing.T) {
			addr := strings.TrimPrefix(startDemo(t).base, "http://")
			block := readmeBlock(t, tc.marker)
			if tc.marker[0] == '#' {
				// The "Try it" section shows httpie with its output first;
				// the curl commands follow under "With curl:".
				block = readmeBlock(t, "With curl:")
			}
			_, port, _ := strings.Cut(addr, ":")
			var script []string
			for _, line := range strings.Split(block, "\n") {
				if strings.HasPrefix(line, "http ") {
					if httpieErr != nil {
						continue
					}
					line = strings.ReplaceAll(line, ":8081/", ":"+port+"/") // httpie's localhost shorthand
					line = "http --ignore-stdin " + strings.TrimPrefix(line, "http ")
				}
				// Only the full address changes: a curl line written with
				// httpie's ":8081/..." shorthand must fail here, as it does
				// for a reader.
				script = append(script, strings.ReplaceAll(line, "127.0.0.1:8081", addr))
			}
			text := strings.Join(script, "\n")
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", text)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
			defer timer.Stop()
			if err := cmd.Run(); err != nil {
				t.Fatalf("README example failed: %v\n%s\n--- output:\n%s", err, text, out.String())
			}
			rest := out.String()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order):\n%s", w, out.String())
				}
				rest = rest[i+len(w):]
			}
		})
	}
}
