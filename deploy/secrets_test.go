package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// buildRecipe writes files (kustomization.yaml among them) into a fresh
// directory beside a reference to the base, and loads the build. "BASE" in
// the kustomization stands for the base's relative path.
func buildRecipe(t *testing.T, files map[string]string) bundle {
	t.Helper()
	base, err := filepath.Abs("kubernetes/base")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		content = strings.ReplaceAll(content, "BASE", rel)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return load(t, dir)
}

func podSecretNames(b bundle) []string {
	var names []string
	for _, r := range podReferences(b.deployments[0].Spec.Template.Spec) {
		if r.kind == "Secret" && !slices.Contains(names, r.name) {
			names = append(names, r.name)
		}
	}
	return names
}

// A change of the replaced Secret changes the name the pod template
// refers to, so `kubectl apply -k` rolls the pods (no SIGHUP in a pod).
func TestSecretChangeRollsPods(t *testing.T) {
	recipe := func(users string) bundle {
		return buildRecipe(t, map[string]string{
			"signing.key": "placeholder",
			"users.yaml":  users,
			"kustomization.yaml": `resources: [BASE]
secretGenerator:
  - name: tokengate-secrets
    behavior: replace
    files: [signing.key, users.yaml]
`,
		})
	}
	a, b := podSecretNames(recipe("users: []\n")), podSecretNames(recipe("users: [{username: x}]\n"))
	if len(a) != 1 || len(b) != 1 || a[0] == b[0] {
		t.Fatalf("Secret names in the pod template %v and %v: want one each, different after a change", a, b)
	}
}

// The base mounts admin.token and verification keys as optional items: a
// kit without them still starts, and a recipe adding them (and naming them
// in config.yaml) passes the invariants; naming one the Secret lacks fails.
func TestOptionalSecretItems(t *testing.T) {
	b := load(t, "kubernetes/base")
	optional := map[string]string{}
	for _, v := range b.deployments[0].Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.Secret != nil && src.Secret.Optional != nil && *src.Secret.Optional {
				for _, it := range src.Secret.Items {
					optional[it.Key] = it.Path
				}
			}
		}
	}
	for _, key := range []string{"admin.token", "verification-1.pem", "verification-2.pem", "ldap-password", "ldap-ca.pem"} {
		if optional[key] == "" {
			t.Errorf("no optional Secret item %s in the base (got %v)", key, optional)
		}
	}

	raw, err := os.ReadFile("kubernetes/base/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	config := strings.Replace(string(raw), "  signing_key_file: /etc/tokengate/secret/signing.key\n",
		"  signing_key_file: /etc/tokengate/secret/signing.key\n  verification_key_files: [VERIFICATION]\n", 1) +
		"admin_token_file: /etc/tokengate/secret/admin.token\n"
	recipe := func(verification string) bundle {
		b := buildRecipe(t, map[string]string{
			"signing.key":        "new key",
			"verification-1.pem": "old public key",
			"admin.token":        strings.Repeat("x", 40),
			"users.yaml":         "users: []\n",
			"config.yaml":        strings.Replace(config, "VERIFICATION", verification, 1),
			"kustomization.yaml": `resources: [BASE]
configMapGenerator:
  - name: tokengate-config
    behavior: replace
    files: [config.yaml]
secretGenerator:
  - name: tokengate-secrets
    behavior: replace
    files: [signing.key, users.yaml, admin.token, verification-1.pem]
`,
		})
		return b
	}
	if errs := sidecarProblems(recipe("/etc/tokengate/secret/verification-1.pem")); len(errs) != 0 {
		t.Errorf("recipe with admin token and a verification key: %v", errs)
	}
	errs := sidecarProblems(recipe("/etc/tokengate/secret/verification-2.pem"))
	if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), "has no key verification-2.pem") }) {
		t.Errorf("a verification key the Secret lacks is not refused: %v", errs)
	}
}

func TestRedisOverlaySecrets(t *testing.T) {
	b := load(t, "kubernetes/overlays/replicas")
	var tg corev1.Container
	for _, c := range b.deployments[0].Spec.Template.Spec.Containers {
		if c.Name == sidecarName {
			tg = c
		}
	}
	if e, _ := envValue(tg, "TOKENGATE_REVOCATION_REDIS_URL"); !strings.HasPrefix(e.Value, "rediss://") {
		t.Errorf("example Redis URL %q, want rediss:// (TLS)", e.Value)
	}
	if e, _ := envValue(tg, "TOKENGATE_REVOCATION_REDIS_PASSWORD_FILE"); e.Value == "" {
		t.Error("no TOKENGATE_REVOCATION_REDIS_PASSWORD_FILE")
	}
	// A password in the plain URL is refused.
	for i := range b.deployments[0].Spec.Template.Spec.Containers {
		c := &b.deployments[0].Spec.Template.Spec.Containers[i]
		for j := range c.Env {
			if c.Env[j].Name == "TOKENGATE_REVOCATION_REDIS_URL" {
				c.Env[j].Value = "rediss://:hunter2@redis:6380/0"
			}
		}
	}
	errs := sidecarProblems(b)
	if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), "holds a password in plain config") }) {
		t.Errorf("a password in the plain Redis URL is not refused: %v", errs)
	}
	if slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), "hunter2") }) {
		t.Errorf("the complaint repeats the password: %v", errs)
	}
}

// LDAP users in the kit: the service password and the CA come from
// optional items of the Secret, or the password from a secretKeyRef;
// naming a file the Secret lacks, or a literal password in the manifest,
// is refused.
func TestLDAPSecretItems(t *testing.T) {
	raw, err := os.ReadFile("kubernetes/base/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ldap := func(password string) string {
		return strings.Replace(string(raw), "  backend: file\n", `  backend: ldap
  ldap:
    url: ldaps://ldap.example.com:636
    ca_file: /etc/tokengate/secret/ldap-ca.pem
    bind_dn: cn=tokengate,ou=services,dc=example,dc=com
`+password+`    base_dn: ou=people,dc=example,dc=com
`, 1)
	}
	recipe := func(config, secretFiles, patch string) bundle {
		files := map[string]string{
			"signing.key":   "new key",
			"users.yaml":    "users: []\n",
			"ldap-password": "service-secret",
			"ldap-ca.pem":   "a CA",
			"config.yaml":   config,
			"kustomization.yaml": `resources: [BASE]
configMapGenerator:
  - name: tokengate-config
    behavior: replace
    files: [config.yaml]
secretGenerator:
  - name: tokengate-secrets
    behavior: replace
    files: [` + secretFiles + `]
` + patch,
		}
		return buildRecipe(t, files)
	}
	withFile := ldap("    bind_password_file: /etc/tokengate/secret/ldap-password\n")
	if !strings.Contains(withFile, "backend: ldap") {
		t.Fatal("the base config.yaml has no users.backend: file line to replace")
	}
	if errs := sidecarProblems(recipe(withFile, "signing.key, users.yaml, ldap-password, ldap-ca.pem", "")); len(errs) != 0 {
		t.Errorf("LDAP with the password and CA files: %v", errs)
	}
	errs := sidecarProblems(recipe(withFile, "signing.key, users.yaml, ldap-ca.pem", ""))
	if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), "has no key ldap-password") }) {
		t.Errorf("a password file the Secret lacks is not refused: %v", errs)
	}
	envPatch := func(value string) string {
		return `patches:
  - target: {kind: Deployment}
    patch: |-
      - op: add
        path: /spec/template/spec/containers/1/env/-
        value: ` + value + "\n"
	}
	fromRef := envPatch(`{name: TOKENGATE_USERS_LDAP_BIND_PASSWORD, valueFrom: {secretKeyRef: {name: tokengate-secrets, key: ldap-password}}}`)
	if errs := sidecarProblems(recipe(ldap(""), "signing.key, users.yaml, ldap-password, ldap-ca.pem", fromRef)); len(errs) != 0 {
		t.Errorf("LDAP with the password from a secretKeyRef: %v", errs)
	}
	literal := envPatch(`{name: TOKENGATE_USERS_LDAP_BIND_PASSWORD, value: hunter2}`)
	errs = sidecarProblems(recipe(ldap(""), "signing.key, users.yaml, ldap-ca.pem", literal))
	if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), "literal in the manifest") }) {
		t.Errorf("a literal password in the manifest is not refused: %v", errs)
	}
	errs = sidecarProblems(recipe(ldap(""), "signing.key, users.yaml, ldap-ca.pem", ""))
	if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), "needs users.ldap.bind_password_file") }) {
		t.Errorf("no password source is not refused: %v", errs)
	}
}
