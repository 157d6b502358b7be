package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadString(t *testing.T, yaml string, environ ...string) (Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokengate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path, environ)
}

func TestAccessRulesDecode(t *testing.T) {
	cfg, err := loadString(t, `
access:
  default: deny
  case_insensitive_paths: true
  rules:
    - name: admin
      paths: [/admin]
      groups: [ops]
    - name: health
      hosts: [.example.com]
      methods: [GET]
      networks: [10.0.0.0/8]
      policy: public
`, "TOKENGATE_ACCESS_GROUPS_HEADER=X-Groups")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := cfg.Access
	if a.Default != "deny" || !a.CaseInsensitivePaths || a.GroupsHeader != "X-Groups" || len(a.Rules) != 2 {
		t.Fatalf("access = %+v", a)
	}
	if r := a.Rules[1]; r.Name != "health" || r.Hosts[0] != ".example.com" || r.Methods[0] != "GET" || r.Networks[0] != "10.0.0.0/8" || r.Policy != "public" {
		t.Errorf("rules[1] = %+v", r)
	}
	ac := cfg.AccessRules()
	if len(ac.PublicPaths) != 1 || ac.PublicPaths[0] != "/healthz" || len(ac.Rules) != 2 || ac.Rules[0].Groups[0] != "ops" {
		t.Errorf("AccessRules = %+v", ac)
	}
}

// TestAccessRulesErrors: each malformed rule is refused naming its key and line.
func TestAccessRulesErrors(t *testing.T) {
	cfg, err := loadString(t, `access:
  rules:
    - name: a
      paths: [admin]
      policy: public
    - name: b
      paths: [/a/../b]
      policy: deny
    - name: c
      groups: [ops]
    - name: d
      paths: [/d]
      policy: allow
    - name: e
      paths: [/e]
      methods: [FETCH]
      policy: deny
    - name: f
      paths: [/f]
      policy: deny
      users: [alice]
    - name: g
      paths: [/g]
  groups_header: Authorization
`)
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted malformed rules")
	}
	for _, want := range []string{
		`access.rules[0].paths[0]: "admin" must start with / (line 4)`,
		`access.rules[1].paths[0]: "/a/../b" must be a clean path`,
		`(line 7)`,
		`access.rules[2]: matches every request`,
		`(line 9)`,
		`access.rules[3].policy: unknown policy "allow": want public, authenticated or deny (line 13)`,
		`access.rules[4].methods[0]: unknown method "FETCH"`,
		`(line 16)`,
		`access.rules[5].policy: "deny" cannot be combined with groups or users`,
		`(line 20)`,
		`access.rules[6].policy: missing: give policy (public, authenticated or deny) or groups/users (line 22)`,
		`access.groups_header: Authorization is reserved (line 24)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

func TestAccessRulesStrict(t *testing.T) {
	_, err := loadString(t, `access:
  rules:
    - name: a
      pathz: [/a]
    - just a string
`)
	if err == nil {
		t.Fatal("Load accepted an unknown key in a rule")
	}
	for _, want := range []string{
		`access.rules[0].pathz: unknown key (line 4); did you mean "paths"?`,
		`access.rules[1]: expected a mapping of keys, got "just a string" (line 5)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	if _, err := Load("", []string{"TOKENGATE_ACCESS_RULES=x"}); err == nil || !strings.Contains(err.Error(), "names no configuration key") {
		t.Errorf("TOKENGATE_ACCESS_RULES: %v, want refused (rules come from the file)", err)
	}
	cfg, err := Load("", []string{"TOKENGATE_ACCESS_GROUPS_HEADER=x_auth_userid"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "access.groups_header: x_auth_userid is also identity_header") {
		t.Errorf("groups header as the identity header: %v", err)
	}
}
