package deploy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/tokengate"

// renderChart renders the chart as `helm install --dry-run=client` does
// (defaults merged, values.schema.json applied, templates rendered) with
// Helm's Go SDK, and returns the manifests as objects.
func renderChart(t *testing.T, release string, vals map[string]any) ([]Object, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = release
	inst.Namespace = "shop"
	// The chart needs 1.30 (the preStop sleep action); Helm's offline default is older.
	kv, err := common.ParseKubeVersion("v1.34.0")
	if err != nil {
		t.Fatal(err)
	}
	inst.KubeVersion = kv
	rel, err := inst.Run(ch, vals)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		t.Fatalf("release is a %T", rel)
	}
	var objs []Object
	for _, doc := range strings.Split(r.Manifest, "\n---") {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if string(j) == "null" {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(j, &meta); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, Object{APIVersion: meta.APIVersion, Kind: meta.Kind, Name: meta.Metadata.Name, JSON: j})
	}
	return objs, nil
}

func loadChart(t *testing.T, vals map[string]any) bundle {
	t.Helper()
	objs, err := renderChart(t, "shop", vals)
	if err != nil {
		t.Fatal(err)
	}
	return decodeBundle(t, chartDir, objs)
}

var testKeyPEM = sync.OnceValue(func() string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
})

// chartValues: the secrets every install passes (--set-file), then the
// value set's own keys (dotted paths).
func chartValues(set map[string]any) map[string]any {
	v := map[string]any{
		"secrets": map[string]any{
			"signingKey": testKeyPEM(),
			"users":      "users:\n  - id: marco\n    name: marco\n    password_hash: \"$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z2S8.7sJtV.sW8ztG0ZRHGaG\"\n",
		},
	}
	for path, val := range set {
		keys := strings.Split(path, ".")
		m := v
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = val
	}
	return v
}

// chartValueSets are the shapes the chart supports, each held to the
// kit's invariants.
var chartValueSets = map[string]map[string]any{
	"sidecar bolt on a claim, monitoring on": {"serviceMonitor.enabled": true, "prometheusRule.enabled": true},
	"sidecar three replicas on redis": {
		"replicas": 3, "revocation.backend": "redis",
		"revocation.redis.url": "rediss://redis.redis.svc:6380/0", "revocation.redis.password": "s3cret-redis",
		"serviceMonitor.enabled": true,
	},
	"sidecar development on an emptyDir": {"development": true, "revocation.persistence.enabled": false},
	"sidecar with admin token and rotation": {
		"secrets.adminToken": "operator-token-0123456789abcdef", "secrets.verificationKeys": []any{testPublicPEM()},
		"config": map[string]any{"tokens": map[string]any{"ttl": "30m"}},
	},
	"forward auth two replicas on redis": {
		"mode": "forwardAuth", "replicas": 2, "revocation.backend": "redis",
		"revocation.redis.url": "redis://redis.redis.svc:6379/0", "revocation.redis.password": "s3cret-redis",
		"trustedProxies": []any{"10.0.0.0/8"}, "ingress.hosts": []any{"app.example.com", "shop.example.com"},
	},
	"forward auth one replica on bolt": {"mode": "forwardAuth", "trustedProxies": []any{"10.42.0.0/16"}},
	"sidecar with LDAP users": {
		"secrets.ldapPassword": "service-secret", "secrets.ldapCA": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		"config": map[string]any{"users": map[string]any{"backend": "ldap", "ldap": map[string]any{
			"url": "ldaps://ldap.example.com:636", "bind_dn": "cn=tokengate,ou=services,dc=example,dc=com", "base_dn": "ou=people,dc=example,dc=com",
		}}},
	},
	"tracing on": {"tracing.enabled": true, "tracing.samplerRatio": 0.05,
		"extraEnv": []any{map[string]any{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://tempo.monitoring:4318"}}},
}

// TestChartAccessValues: the access and users values reach tokengate's
// config as its own keys, the rendered config passes check-config, and
// the defaults render tokengate's own defaults.
func TestChartAccessValues(t *testing.T) {
	bin := tokengateBinary(t)
	for name, tc := range map[string]struct {
		set  map[string]any
		want string // the config's access and users.refresh_interval, as YAML
	}{
		"defaults": {nil, `
access: {case_insensitive_paths: false, default: authenticated, groups_header: X-Auth-Groups, rules: []}
refresh_interval: 1m
`},
		"an allow-list of groups": {map[string]any{
			"access.default": "deny", "access.caseInsensitivePaths": true, "access.groupsHeader": "X-Groups",
			"access.rules": []any{
				map[string]any{"name": "health", "paths": []any{"=/healthz"}, "policy": "public"},
				map[string]any{"name": "admin", "paths": []any{"/admin"}, "methods": []any{"GET"}, "groups": []any{"ops"}},
				map[string]any{"name": "office", "hosts": []any{".example.com"}, "networks": []any{"10.0.0.0/8"}, "users": []any{"marco"}},
			},
			"users.refreshInterval": "30s",
		}, `
access:
  case_insensitive_paths: true
  default: deny
  groups_header: X-Groups
  rules:
    - {name: health, paths: [=/healthz], policy: public}
    - {name: admin, paths: [/admin], methods: [GET], groups: [ops]}
    - {name: office, hosts: [.example.com], networks: [10.0.0.0/8], users: [marco]}
refresh_interval: 30s
`},
	} {
		t.Run(name, func(t *testing.T) {
			b := loadChart(t, chartValues(tc.set))
			var cfg struct {
				Access any `json:"access"`
				Users  struct {
					RefreshInterval string `json:"refresh_interval"`
				} `json:"users"`
			}
			if err := yaml.Unmarshal([]byte(firstConfig(b)), &cfg); err != nil {
				t.Fatal(err)
			}
			var want struct {
				Access          any    `json:"access"`
				RefreshInterval string `json:"refresh_interval"`
			}
			if err := yaml.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			got, _ := yaml.Marshal(cfg.Access)
			exp, _ := yaml.Marshal(want.Access)
			if !bytes.Equal(got, exp) || cfg.Users.RefreshInterval != want.RefreshInterval {
				t.Errorf("rendered access:\n%s\nusers.refresh_interval %q; want access:\n%s\nusers.refresh_interval %q",
					got, cfg.Users.RefreshInterval, exp, want.RefreshInterval)
			}
			checkConfigOnly(t, bin, b)
		})
	}
}

func testPublicPEM() string {
	block, _ := pem.Decode([]byte(testKeyPEM()))
	k, _ := x509.ParsePKCS8PrivateKey(block.Bytes)
	der, _ := x509.MarshalPKIXPublicKey(k.(ed25519.PrivateKey).Public())
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestChartKeepsSidecarInvariants renders each value set, decodes every
// object strictly, and applies the same invariants as the kustomize kit
// (sidecarProblems); the rendered config passes `tokengate check-config`.
func TestChartKeepsSidecarInvariants(t *testing.T) {
	bin := tokengateBinary(t)
	for name, set := range chartValueSets {
		t.Run(name, func(t *testing.T) {
			b := loadChart(t, chartValues(set))
			for _, err := range sidecarProblems(b) {
				t.Error(err)
			}
			d := b.deployments[0]
			forward := set["mode"] == "forwardAuth"
			if n := len(d.Spec.Template.Spec.Containers); forward && n != 1 || !forward && n != 2 {
				t.Errorf("%d containers", n)
			}
			if forward {
				hosts := []any{"app.example.com"}
				if h, ok := set["ingress.hosts"].([]any); ok {
					hosts = h
				}
				if len(b.ingresses) != 1 || len(b.ingresses[0].Spec.Rules) != len(hosts) {
					t.Fatalf("forward auth: %d Ingresses, want 1 with a rule per host %v", len(b.ingresses), hosts)
				}
				for _, r := range b.ingresses[0].Spec.Rules {
					p := r.HTTP.Paths[0]
					if p.Path != "/tokengate/" || p.Backend.Service.Name != b.services[0].Name || p.Backend.Service.Port.Name != "http" {
						t.Errorf("Ingress rule %s: path %s to %+v, want /tokengate/ to the public Service's http port", r.Host, p.Path, p.Backend.Service)
					}
				}
			}
			if !forward && len(b.ingresses) != 0 {
				t.Errorf("sidecar mode renders an Ingress")
			}
			if set["serviceMonitor.enabled"] == true && len(b.serviceMonitors) != 1 || set["serviceMonitor.enabled"] == nil && len(b.serviceMonitors) != 0 {
				t.Errorf("%d ServiceMonitors for serviceMonitor.enabled=%v", len(b.serviceMonitors), set["serviceMonitor.enabled"])
			}
			if set["tracing.enabled"] == true {
				cfg := firstConfig(b)
				if !strings.Contains(cfg, "tracing:\n  enabled: true\n  sampler_ratio: 0.05") {
					t.Errorf("tracing values did not reach the config:\n%s", cfg)
				}
				if e, _ := envValue(b.deployments[0].Spec.Template.Spec.Containers[1], "OTEL_EXPORTER_OTLP_ENDPOINT"); e.Value != "http://tempo.monitoring:4318" {
					t.Errorf("extraEnv did not reach tokengate: %+v", e)
				}
			}
			checkConfigOnly(t, bin, b)
		})
	}
}

// checkConfigOnly runs the real binary's check-config on the rendered config.
func checkConfigOnly(t *testing.T, bin string, b bundle) {
	t.Helper()
	for name, cm := range b.configMaps {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "check-config", "--config-only", "--config", path).CombinedOutput()
		if err != nil {
			t.Errorf("ConfigMap %s: tokengate check-config: %v\n%s\n%s", name, err, out, cm.Data["config.yaml"])
		}
	}
}

// tokengateBinary builds cmd/tokengate once per test binary.
var tokengateBinary = func() func(t *testing.T) string {
	var once sync.Once
	var bin string
	var err error
	var out []byte
	return func(t *testing.T) string {
		t.Helper()
		once.Do(func() {
			dir, e := os.MkdirTemp("", "tokengate-deploy-test")
			if e != nil {
				err = e
				return
			}
			bin = filepath.Join(dir, "tokengate")
			cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/tokengate")
			cmd.Dir = ".."
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			out, err = cmd.CombinedOutput()
		})
		if err != nil {
			t.Fatalf("go build ./cmd/tokengate: %v\n%s", err, out)
		}
		return bin
	}
}()

// TestChartSchemaRefusesBadValues: a wrong value fails at install time,
// before anything is rendered.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	for name, tc := range map[string]struct {
		set  map[string]any
		want string
	}{
		"unknown mode":                                 {map[string]any{"mode": "proxy"}, "mode"},
		"port as a string":                             {map[string]any{"app.port": "8080"}, "port"},
		"misspelt key":                                 {map[string]any{"replica": 3}, "replica"},
		"replicas on bolt":                             {map[string]any{"replicas": 3}, "backend"},
		"bolt on an emptyDir, not dev":                 {map[string]any{"revocation.persistence.enabled": false}, "development"},
		"redis without its URL":                        {map[string]any{"revocation.backend": "redis", "revocation.redis.password": "x"}, "url"},
		"password in the redis URL":                    {map[string]any{"revocation.backend": "redis", "revocation.redis.url": "redis://:pw@redis:6379/0", "revocation.redis.password": "x"}, "url"},
		"no signing key":                               {map[string]any{"secrets.signingKey": ""}, "signingKey"},
		"app on tokengate's port":                      {map[string]any{"app.port": 8081}, "port"},
		"forward auth without the ingress's addresses": {map[string]any{"mode": "forwardAuth"}, "trustedProxies"},
		"sampler ratio above one":                      {map[string]any{"tracing.samplerRatio": 1.5}, "samplerRatio"},
		"image digest that is no digest":               {map[string]any{"image.digest": "latest"}, "digest"},
		"access default that is no policy":             {map[string]any{"access.default": "allow"}, "default"},
		"access rule with a misspelt key":              {map[string]any{"access.rules": []any{map[string]any{"name": "admin", "path": []any{"/admin"}}}}, "path"},
		"refresh interval without a unit":              {map[string]any{"users.refreshInterval": "60"}, "refreshInterval"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderChart(t, "shop", chartValues(tc.set))
			if err == nil {
				t.Fatal("rendered; want a schema error")
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want a schema error naming %q", err, tc.want)
			}
		})
	}
	// The sets above fail for their one bad value, not for something else.
	if _, err := renderChart(t, "shop", chartValues(nil)); err != nil {
		t.Fatalf("the base values fail: %v", err)
	}
}

// TestChartSecretChangeRollsPods: a new key or users file changes the pod
// template (so the pods roll); the same values render the same template.
func TestChartSecretChangeRollsPods(t *testing.T) {
	podTemplate := func(set map[string]any) map[string]string {
		return loadChart(t, chartValues(set)).deployments[0].Spec.Template.Annotations
	}
	a, again := podTemplate(nil), podTemplate(nil)
	users := podTemplate(map[string]any{"secrets.users": "users: []\n"})
	cfg := podTemplate(map[string]any{"config": map[string]any{"tokens": map[string]any{"ttl": "30m"}}})
	if !equalMaps(a, again) {
		t.Errorf("same values, different pod annotations: %v vs %v", a, again)
	}
	if a["checksum/secret-shop-secrets"] == users["checksum/secret-shop-secrets"] || a["checksum/secret-shop-secrets"] == "" {
		t.Errorf("a new users file leaves the Secret checksum at %q", a["checksum/secret-shop-secrets"])
	}
	if a["checksum/configmap-shop-config"] == cfg["checksum/configmap-shop-config"] || a["checksum/configmap-shop-config"] == "" {
		t.Errorf("a config change leaves the ConfigMap checksum at %q", a["checksum/configmap-shop-config"])
	}
	// And the invariant notices a stale checksum.
	b := loadChart(t, chartValues(nil))
	b.secrets["shop-secrets"].StringData["users.yaml"] = "users: []\n"
	found := false
	for _, err := range sidecarProblems(b) {
		found = found || strings.Contains(err.Error(), "is not the digest of Secret shop-secrets")
	}
	if !found {
		t.Error("a Secret whose content no longer matches the pod's checksum is not caught")
	}
}

// TestChartMatchesKit: the chart's sidecar defaults are the kit's, field by
// field where both set them (probes, securityContext, resources, ports,
// grace period, preStop), and the chart's alert rules are the kit's.
func TestChartMatchesKit(t *testing.T) {
	kit := load(t, "kubernetes/base")
	chart := loadChart(t, chartValues(map[string]any{"prometheusRule.enabled": true}))
	pick := func(d *appsv1.Deployment, name string) corev1.Container {
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == name {
				return c
			}
		}
		t.Fatalf("Deployment %s has no container %s", d.Name, name)
		return corev1.Container{}
	}
	same := func(what string, a, b any) {
		t.Helper()
		ja, _ := yaml.Marshal(a)
		jb, _ := yaml.Marshal(b)
		if !bytes.Equal(ja, jb) {
			t.Errorf("%s differs:\nkit:\n%s\nchart:\n%s", what, ja, jb)
		}
	}
	kd, cd := kit.deployments[0], chart.deployments[0]
	kt, ct := pick(kd, sidecarName), pick(cd, sidecarName)
	same("tokengate readinessProbe", kt.ReadinessProbe, ct.ReadinessProbe)
	same("tokengate livenessProbe", kt.LivenessProbe, ct.LivenessProbe)
	same("tokengate securityContext", kt.SecurityContext, ct.SecurityContext)
	same("tokengate resources", kt.Resources, ct.Resources)
	same("tokengate ports", kt.Ports, ct.Ports)
	same("tokengate args", kt.Args, ct.Args)
	same("tokengate env", kt.Env, ct.Env)
	same("tokengate volumeMounts", kt.VolumeMounts, ct.VolumeMounts)
	ka, ca := pick(kd, "app"), pick(cd, "app")
	same("app securityContext", ka.SecurityContext, ca.SecurityContext)
	same("app lifecycle", ka.Lifecycle, ca.Lifecycle)
	same("app args", ka.Args, ca.Args)
	same("pod securityContext", kd.Spec.Template.Spec.SecurityContext, cd.Spec.Template.Spec.SecurityContext)
	same("terminationGracePeriodSeconds", kd.Spec.Template.Spec.TerminationGracePeriodSeconds, cd.Spec.Template.Spec.TerminationGracePeriodSeconds)
	same("strategy", kd.Spec.Strategy, cd.Spec.Strategy)
	if len(kit.rules) != 1 || len(chart.rules) != 1 {
		t.Fatalf("PrometheusRules: kit %d, chart %d", len(kit.rules), len(chart.rules))
	}
	same("alert rules", kit.rules[0].Spec, chart.rules[0].Spec)

	kc, _ := parseSidecarConfig(firstConfig(kit))
	cc, _ := parseSidecarConfig(firstConfig(chart))
	same("config (the keys the manifests depend on)", kc, cc)
}

func firstConfig(b bundle) string {
	for _, cm := range b.configMaps {
		return cm.Data["config.yaml"]
	}
	return ""
}

// TestChartInvariantsCatchBreakage: values the schema cannot judge (the
// app's own flags) and hand edits of the rendered output are still caught
// by the kit's invariants.
func TestChartInvariantsCatchBreakage(t *testing.T) {
	for name, tc := range map[string]struct {
		set    map[string]any
		break_ func(b bundle)
		want   string
	}{
		"app on all interfaces":             {map[string]any{"app.args": []any{"-listen=0.0.0.0:8080"}}, nil, "wildcard"},
		"app on another port than upstream": {map[string]any{"app.port": 9000}, nil, "must be told to listen on 127.0.0.1:9000"},
		"preStop shorter than the drain":    {map[string]any{"app.preStopSleepSeconds": 10}, nil, "is shorter than"},
		"forward auth with an app beside it": {map[string]any{"mode": "forwardAuth", "trustedProxies": []any{"10.0.0.0/8"}}, func(b bundle) {
			pod := &b.deployments[0].Spec.Template.Spec
			pod.Containers = append(pod.Containers, *pod.Containers[0].DeepCopy())
			pod.Containers[1].Name = "app"
		}, "nothing reaches"},
		"development mark dropped": {map[string]any{"development": true, "revocation.persistence.enabled": false}, func(b bundle) {
			delete(b.deployments[0].Annotations, kitAnnotation)
		}, "is on an emptyDir"},
	} {
		t.Run(name, func(t *testing.T) {
			b := loadChart(t, chartValues(tc.set))
			if tc.break_ != nil {
				if errs := sidecarProblems(b); len(errs) != 0 {
					t.Fatalf("clean before the edit: %v", errs)
				}
				tc.break_(b)
			}
			for _, err := range sidecarProblems(b) {
				if strings.Contains(err.Error(), tc.want) {
					return
				}
			}
			t.Errorf("no problem mentioning %q; got %v", tc.want, sidecarProblems(b))
		})
	}
}
