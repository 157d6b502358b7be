package testsvc

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Slapd is a private OpenLDAP server started for one test: plain LDAP
// (StartTLS offered) and LDAPS on free loopback ports, a memberof overlay,
// the core, cosine, inetorgperson and nis schemas, and a test CA made at
// start. It is killed when the test ends.
type Slapd struct {
	URL      string // ldap://127.0.0.1:port (StartTLS available)
	LDAPSURL string // ldaps://127.0.0.1:port
	// BaseDN is the suffix (dc=example,dc=com); RootDN / RootPassword the
	// directory manager, which bypasses access control (for test edits).
	BaseDN, RootDN, RootPassword string
	// CAFile is the PEM CA that signed the server's certificate (names
	// 127.0.0.1 and localhost); WrongCAFile is another CA that did not.
	CAFile, WrongCAFile string
	// ClientCertFile and ClientKeyFile: a client certificate from CAFile's CA.
	ClientCertFile, ClientKeyFile string

	dir  string
	args []string
	cmd  *exec.Cmd
}

// slapdConf is the server's configuration. The service account
// cn=tokengate,ou=services may read everything but passwords; anonymous
// clients may only bind. "allow bind_anon_dn" makes a name with an empty
// password an (unauthenticated) success, as many servers do, so a client
// that sends one is caught by the tests.
const slapdConf = `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {{dir}}/slapd.pid
argsfile {{dir}}/slapd.args
allow bind_anon_dn
TLSCACertificateFile {{dir}}/ca.pem
TLSCertificateFile {{dir}}/server.pem
TLSCertificateKeyFile {{dir}}/server.key
TLSVerifyClient allow
sizelimit 500
database mdb
maxsize 67108864
suffix "dc=example,dc=com"
rootdn "cn=admin,dc=example,dc=com"
rootpw {{rootpw}}
directory {{dir}}/db
overlay memberof
memberof-refint TRUE
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact="cn=tokengate,ou=services,dc=example,dc=com" read
  by self read
  by * none
`

// StartSlapd starts slapd (Debian package slapd) and loads DirectoryLDIF,
// then the LDIF files given, through the directory manager; the
// memberof overlay fills memberOf as groups are added. Skipped with one
// line when slapd is not installed, unless TOKENGATE_TEST_REQUIRE_SERVICES=1.
func StartSlapd(t testing.TB, ldifFiles ...string) *Slapd {
	t.Helper()
	bin, err := exec.LookPath("slapd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/slapd"); serr != nil {
			unavailable(t, "slapd not installed (Debian package slapd)")
			return nil
		}
		bin = "/usr/sbin/slapd"
	}
	s := &Slapd{dir: t.TempDir(), BaseDN: "dc=example,dc=com", RootDN: "cn=admin,dc=example,dc=com", RootPassword: "admin-secret"}
	if err := os.Mkdir(filepath.Join(s.dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.writeCerts(t)
	conf := strings.NewReplacer("{{dir}}", s.dir, "{{rootpw}}", s.RootPassword).Replace(slapdConf)
	if err := os.WriteFile(filepath.Join(s.dir, "slapd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	plain, secure := freePort(t), freePort(t)
	s.URL = "ldap://127.0.0.1:" + strconv.Itoa(plain)
	s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(secure)
	// -d 0: stay in the foreground (the test owns the process), log nothing.
	s.args = []string{"-d", "0", "-f", filepath.Join(s.dir, "slapd.conf"), "-h", s.URL + "/ " + s.LDAPSURL + "/"}
	s.start(t, bin)
	t.Cleanup(s.Stop)
	for _, f := range append([]string{DirectoryLDIF()}, ldifFiles...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s.AddLDIF(t, string(data))
	}
	return s
}

func (s *Slapd) start(t testing.TB, bin string) {
	t.Helper()
	s.cmd = exec.Command(bin, s.args...)
	out, err := os.Create(filepath.Join(s.dir, "slapd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start slapd: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 200 * time.Millisecond}))
		if err == nil {
			c.SetTimeout(time.Second)
			err = c.Bind(s.RootDN, s.RootPassword)
			c.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "slapd.log"))
			s.Stop()
			t.Fatalf("slapd on %s did not answer within 15s: %v\n%s", s.URL, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PID is the server's process id (0 when stopped).
func (s *Slapd) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Pause stops the server with SIGSTOP: connections are accepted by the
// kernel and then nothing answers. Resumed at the end of the test.
func (s *Slapd) Pause(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Resume)
	// The signal stops each thread when the kernel next gets to it: wait
	// until all are stopped, so no request sent after Pause is answered.
	deadline := time.Now().Add(5 * time.Second)
	for !stopped(s.cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("slapd did not stop within 5s of SIGSTOP")
		}
		time.Sleep(time.Millisecond)
	}
}

// stopped reports whether every thread of pid is stopped (state T).
func stopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		// pid (comm) state ...: the state follows the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}

// Resume continues a paused server.
func (s *Slapd) Resume() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// Stop kills the server (SIGKILL) and waits for it; safe to call twice.
func (s *Slapd) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the killed server again on the same ports, same data.
func (s *Slapd) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t, s.cmd0())
}

func (s *Slapd) cmd0() string {
	if bin, err := exec.LookPath("slapd"); err == nil {
		return bin
	}
	return "/usr/sbin/slapd"
}

// Admin returns a connection bound as the directory manager, closed when
// the test ends.
func (s *Slapd) Admin(t testing.TB) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(5 * time.Second)
	if err := c.Bind(s.RootDN, s.RootPassword); err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Leavers makes the directory changes the live-refresh tests look for:
// alice leaves ops (carol joins it, so the group keeps a member), bob's
// entry is deleted, and carol is disabled (description "disabled", which
// the tests' user filter refuses).
func (s *Slapd) Leavers(t testing.TB) {
	t.Helper()
	admin := s.Admin(t)
	mod := ldap.NewModifyRequest("cn=ops,ou=groups,dc=example,dc=com", nil)
	mod.Add("member", []string{"uid=carol,ou=people,dc=example,dc=com"})
	mod.Delete("member", []string{"uid=alice,ou=people,dc=example,dc=com"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	if err := admin.Del(ldap.NewDelRequest("uid=bob,ou=people,dc=example,dc=com", nil)); err != nil {
		t.Fatal(err)
	}
	mod = ldap.NewModifyRequest("uid=carol,ou=people,dc=example,dc=com", nil)
	mod.Replace("description", []string{"disabled"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
}

// AddLDIF adds the entries of an LDIF text (attr: value lines, attr::
// base64, continuation lines, # comments; entries separated by blank lines).
func (s *Slapd) AddLDIF(t testing.TB, text string) {
	t.Helper()
	c := s.Admin(t)
	entries, err := parseLDIF(text)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		req := ldap.NewAddRequest(e.dn, nil)
		for _, a := range e.attrs {
			req.Attribute(a.name, a.values)
		}
		if err := c.Add(req); err != nil {
			t.Fatalf("add %s: %v", e.dn, err)
		}
	}
}

type ldifAttr struct {
	name   string
	values []string
}

type ldifEntry struct {
	dn    string
	attrs []ldifAttr
}

func parseLDIF(text string) ([]ldifEntry, error) {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, " ") && len(lines) > 0 && lines[len(lines)-1] != "" {
			lines[len(lines)-1] += l[1:]
			continue
		}
		if strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, strings.TrimRight(l, " "))
	}
	var entries []ldifEntry
	var cur *ldifEntry
	for _, l := range append(lines, "") {
		if l == "" {
			if cur != nil {
				entries = append(entries, *cur)
				cur = nil
			}
			continue
		}
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("ldif: line %q has no colon", l)
		}
		if strings.HasPrefix(val, ":") {
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(val[1:]))
			if err != nil {
				return nil, fmt.Errorf("ldif: %s: %v", name, err)
			}
			val = string(b)
		} else {
			val = strings.TrimPrefix(val, " ")
		}
		if cur == nil {
			if !strings.EqualFold(name, "dn") {
				return nil, fmt.Errorf("ldif: entry starts with %q, want dn", name)
			}
			cur = &ldifEntry{dn: val}
			continue
		}
		found := false
		for i := range cur.attrs {
			if strings.EqualFold(cur.attrs[i].name, name) {
				cur.attrs[i].values = append(cur.attrs[i].values, val)
				found = true
			}
		}
		if !found {
			cur.attrs = append(cur.attrs, ldifAttr{name: name, values: []string{val}})
		}
	}
	return entries, nil
}

// writeCerts makes a CA, a server certificate for 127.0.0.1 and localhost,
// a client certificate, and a second, unrelated CA.
func (s *Slapd) writeCerts(t testing.TB) {
	t.Helper()
	ca, caKey := newCA(t, "tokengate test LDAP CA")
	wrong, _ := newCA(t, "some other CA")
	s.CAFile = filepath.Join(s.dir, "ca.pem")
	s.WrongCAFile = filepath.Join(s.dir, "wrong-ca.pem")
	writePEM(t, s.CAFile, "CERTIFICATE", ca.Raw)
	writePEM(t, s.WrongCAFile, "CERTIFICATE", wrong.Raw)
	serverDER, serverKey := issue(t, ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	writePEM(t, filepath.Join(s.dir, "server.pem"), "CERTIFICATE", serverDER)
	writePEM(t, filepath.Join(s.dir, "server.key"), "PRIVATE KEY", serverKey)
	clientDER, clientKey := issue(t, ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "tokengate"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	s.ClientCertFile = filepath.Join(s.dir, "client.pem")
	s.ClientKeyFile = filepath.Join(s.dir, "client.key")
	writePEM(t, s.ClientCertFile, "CERTIFICATE", clientDER)
	writePEM(t, s.ClientKeyFile, "PRIVATE KEY", clientKey)
}

func newCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func issue(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (der, keyDER []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err = x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der, keyDER
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// DirectoryLDIF is the path of the directory StartSlapd loads first: the
// people, groups and service account the LDAP tests share
// (internal/testsvc/testdata/directory.ldif).
func DirectoryLDIF() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "directory.ldif")
}
