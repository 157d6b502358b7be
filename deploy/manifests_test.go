package deploy

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func TestKustomizationsBuildStrictlyAndKeepSidecarInvariants(t *testing.T) {
	for _, dir := range kustomizations(t) {
		t.Run(dir, func(t *testing.T) {
			b := load(t, dir)
			for _, err := range sidecarProblems(b) {
				t.Error(err)
			}
			if len(b.netpols) == 0 || len(b.rules) == 0 || len(b.serviceMonitors) == 0 {
				t.Errorf("want a NetworkPolicy, a PrometheusRule and a ServiceMonitor, got %d, %d and %d", len(b.netpols), len(b.rules), len(b.serviceMonitors))
			}
		})
	}
}

func TestBaseIsOneReplicaOnBolt(t *testing.T) {
	b := load(t, "kubernetes/base")
	d := b.deployments[0]
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("base replicas = %v, want 1 (bolt keeps revocations per pod)", d.Spec.Replicas)
	}
	// Revocations survive pod replacement: bolt on a claim, one pod at a time.
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("base strategy = %q, want Recreate", d.Spec.Strategy.Type)
	}
	var tg corev1.Container
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == sidecarName {
			tg = c
		}
	}
	if src, err := resolveFile(d.Spec.Template.Spec, tg, "/var/lib/tokengate/revocations.db"); err != nil || src.kind != "persistentVolumeClaim" {
		t.Errorf("base bolt file on %+v (%v), want a persistentVolumeClaim", src, err)
	} else if pvc := b.pvcs[src.name]; pvc == nil || !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteOnce) {
		t.Errorf("PersistentVolumeClaim %s = %+v, want one in the build, ReadWriteOnce", src.name, pvc)
	}
	if d.Annotations[kitAnnotation] != "" {
		t.Errorf("the base carries %s=%q; only overlays/dev may", kitAnnotation, d.Annotations[kitAnnotation])
	}
	for name, cm := range b.configMaps {
		if !strings.HasPrefix(name, "tokengate-config-") {
			t.Errorf("ConfigMap %s: want the generated, hash-suffixed tokengate-config", name)
		}
		raw, err := os.ReadFile("kubernetes/base/config.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["config.yaml"] != string(raw) {
			t.Errorf("ConfigMap %s does not carry kubernetes/base/config.yaml verbatim", name)
		}
	}
}

func TestReplicasOverlay(t *testing.T) {
	b := load(t, "kubernetes/overlays/replicas")
	if len(b.deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(b.deployments))
	}
	d := b.deployments[0]
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas = %v, want >= 2", d.Spec.Replicas)
	}
	var tg corev1.Container
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == sidecarName {
			tg = c
		}
	}
	if e, _ := envValue(tg, "TOKENGATE_REVOCATION_BACKEND"); e.Value != "redis" {
		t.Errorf("TOKENGATE_REVOCATION_BACKEND = %q, want redis", e.Value)
	}
	if len(b.pvcs) != 0 || d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Errorf("PVCs %v, strategy %q: with Redis, want no claim and rolling updates", b.pvcs, d.Spec.Strategy.Type)
	}
	if len(d.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
		t.Error("no topologySpreadConstraints")
	}
	if len(b.pdbs) != 1 || b.pdbs[0].Spec.MinAvailable == nil || *b.pdbs[0].Spec.MinAvailable != intstr.FromInt32(2) || b.pdbs[0].Spec.MaxUnavailable != nil {
		t.Errorf("PDB spec = %+v, want minAvailable 2 and no maxUnavailable", b.pdbs[0].Spec)
	}
	// The app container survives the strategic merge untouched.
	if n := len(d.Spec.Template.Spec.Containers); n != 2 {
		t.Errorf("%d containers after the patch, want 2", n)
	}
}

// TestDevOverlay: bolt on an emptyDir, allowed only because the kit says
// it is for development.
func TestDevOverlay(t *testing.T) {
	b := load(t, "kubernetes/overlays/dev")
	d := b.deployments[0]
	if d.Annotations[kitAnnotation] != "development" {
		t.Fatalf("overlays/dev Deployment annotations = %v, want %s: development", d.Annotations, kitAnnotation)
	}
	if len(b.pvcs) != 0 {
		t.Errorf("overlays/dev keeps PersistentVolumeClaims %v", b.pvcs)
	}
	delete(d.Annotations, kitAnnotation)
	found := false
	for _, err := range sidecarProblems(b) {
		found = found || strings.Contains(err.Error(), "is on an emptyDir")
	}
	if !found {
		t.Error("without the development mark, bolt on an emptyDir is not refused")
	}
}

// TestInvariantsCatchBreakage proves each invariant check can fail: each
// case breaks one thing in the built base and expects a complaint naming it.
func TestInvariantsCatchBreakage(t *testing.T) {
	container := func(b bundle, name string) *corev1.Container {
		cs := b.deployments[0].Spec.Template.Spec.Containers
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
		t.Fatalf("no container %s", name)
		return nil
	}
	cases := []struct {
		name   string
		break_ func(b bundle)
		want   string
	}{
		{"app on all interfaces", func(b bundle) { container(b, "app").Args[0] = "-listen=0.0.0.0:8080" }, "wildcard"},
		{"app on :8080", func(b bundle) { container(b, "app").Args[0] = "-listen=:8080" }, "wildcard"},
		{"app exposes a port", func(b bundle) {
			container(b, "app").Ports = []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}}
		}, "declares containerPorts"},
		{"Service targets the app", func(b bundle) { b.services[0].Spec.Ports[0].TargetPort = intstr.FromInt32(8080) }, "not a tokengate port"},
		{"admin port in the public Service", func(b bundle) {
			b.services[0].Spec.Ports = append(b.services[0].Spec.Ports, corev1.ServicePort{Name: "metrics", Port: 9091, TargetPort: intstr.FromString("admin")})
		}, "exposes the admin port"},
		{"readiness on the public port", func(b bundle) {
			container(b, sidecarName).ReadinessProbe.HTTPGet.Port = intstr.FromString("http")
		}, "readinessProbe"},
		{"writable root filesystem", func(b bundle) {
			f := false
			container(b, "app").SecurityContext.ReadOnlyRootFilesystem = &f
		}, "readOnlyRootFilesystem"},
		{"capabilities kept", func(b bundle) { container(b, sidecarName).SecurityContext.Capabilities.Drop = nil }, "capabilities"},
		{"root user", func(b bundle) {
			root := int64(0)
			container(b, sidecarName).SecurityContext.RunAsUser = &root
		}, "runAsUser"},
		{"no limits", func(b bundle) { container(b, sidecarName).Resources.Limits = nil }, "limit"},
		{"app without CPU limit", func(b bundle) { delete(container(b, "app").Resources.Limits, corev1.ResourceCPU) }, "cpu request and limit"},
		{"sidecar CPU limit that logins saturate", func(b bundle) {
			container(b, sidecarName).Resources.Limits[corev1.ResourceCPU] = resource.MustParse("500m")
		}, "lets bcrypt logins throttle the proxy"},
		{"sidecar memory request below full caches", func(b bundle) {
			container(b, sidecarName).Resources.Requests[corev1.ResourceMemory] = resource.MustParse("32Mi")
		}, "below what full caches take"},
		{"no GOMEMLIMIT", func(b bundle) { container(b, sidecarName).Env = nil }, "GOMEMLIMIT"},
		{"GOMEMLIMIT in MiB", func(b bundle) {
			container(b, sidecarName).Env[0].ValueFrom.ResourceFieldRef.Divisor = resource.MustParse("1Mi")
		}, "GOMEMLIMIT"},
		{"short grace period", func(b bundle) {
			g := int64(30)
			b.deployments[0].Spec.Template.Spec.TerminationGracePeriodSeconds = &g
		}, "terminationGracePeriodSeconds"},
		{"app without preStop", func(b bundle) { container(b, "app").Lifecycle = nil }, "preStop sleep action"},
		{"app preStop too short", func(b bundle) { container(b, "app").Lifecycle.PreStop.Sleep.Seconds = 29 }, "is shorter than"},
		{"grace period within the preStop", func(b bundle) {
			g := int64(35)
			container(b, "app").Lifecycle.PreStop.Sleep.Seconds = 35
			b.deployments[0].Spec.Template.Spec.TerminationGracePeriodSeconds = &g
		}, "must exceed app container app's preStop sleep"},
		{"bolt on an emptyDir", func(b bundle) {
			vols := b.deployments[0].Spec.Template.Spec.Volumes
			for i := range vols {
				if vols[i].Name == "data" {
					vols[i].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
				}
			}
		}, "is on an emptyDir"},
		{"bolt on a claim with rolling updates", func(b bundle) {
			b.deployments[0].Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType}
		}, "strategy must be Recreate"},
		{"claim not in the build", func(b bundle) { clear(b.pvcs) }, "is not in the build"},
		{"replicas on bolt", func(b bundle) {
			r := int32(3)
			b.deployments[0].Spec.Replicas = &r
		}, "revocations would be per replica"},
		{"signing key not mounted", func(b bundle) {
			src := b.deployments[0].Spec.Template.Spec.Volumes[0].Projected.Sources
			src[1].Secret.Items = src[1].Secret.Items[1:]
		}, "tokens.signing_key_file"},
		{"Secret not generated", func(b bundle) {
			src := b.deployments[0].Spec.Template.Spec.Volumes[0].Projected.Sources
			src[1].Secret.Name = "tokengate-secrets"
			b.secrets["tokengate-secrets"] = b.secrets[src[2].Secret.Name]
		}, "is not generated"},
		{"no PDB", func(b bundle) { b.pdbs[0].Spec.Selector.MatchLabels = map[string]string{"x": "y"} }, "PodDisruptionBudgets"},
		{"nothing scrapes", func(b bundle) { b.serviceMonitors[0].Spec.Endpoints[0].Port = "http" }, "ServiceMonitor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := load(t, "kubernetes/base")
			if errs := sidecarProblems(b); len(errs) != 0 {
				t.Fatalf("base is not clean: %v", errs)
			}
			tc.break_(b)
			errs := sidecarProblems(b)
			for _, err := range errs {
				if strings.Contains(err.Error(), tc.want) {
					return
				}
			}
			t.Errorf("no problem mentioning %q; got %v", tc.want, errs)
		})
	}
}

// TestStrictDecodeCatchesMistakes: kustomize itself passes unknown fields
// through, so the strict decode is what catches them.
func TestStrictDecodeCatchesMistakes(t *testing.T) {
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers:
        - name: x
          image: x
          ports:
            - %s: 8080
`
	cases := []struct {
		name, manifest, want string
	}{
		{"misspelt field", strings.Replace(deployment, "%s", "contianerPort", 1), "contianerPort"},
		{"wrong case", strings.Replace(deployment, "%s", "ContainerPort", 1), "ContainerPort"},
		{"misspelt ServiceMonitor field", `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: x
spec:
  selector: {matchLabels: {app: x}}
  endpoints:
    - port: metrics
      intreval: 30s
`, "intreval"},
		{"misspelt PrometheusRule field", `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: x
spec:
  groups:
    - name: g
      rules:
        - alert: A
          expresion: up == 0
`, "expresion"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n", "no API type known"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := filesys.MakeFsInMemory()
			if err := fs.WriteFile("/k/kustomization.yaml", []byte("resources: [obj.yaml]\n")); err != nil {
				t.Fatal(err)
			}
			if err := fs.WriteFile("/k/obj.yaml", []byte(tc.manifest)); err != nil {
				t.Fatal(err)
			}
			objs, err := Build(fs, "/k")
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(objs[0])
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode error = %v, want one naming %q", err, tc.want)
			}
		})
	}
	t.Run("correct spelling decodes", func(t *testing.T) {
		fs := filesys.MakeFsInMemory()
		_ = fs.WriteFile("/k/kustomization.yaml", []byte("resources: [obj.yaml]\n"))
		_ = fs.WriteFile("/k/obj.yaml", []byte(strings.Replace(deployment, "%s", "containerPort", 1)))
		objs, err := Build(fs, "/k")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(objs[0]); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSecretRecipe builds the README's recipe: an overlay of the base that
// replaces the placeholder Secret with real files via secretGenerator.
func TestSecretRecipe(t *testing.T) {
	base, err := filepath.Abs("kubernetes/base")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	users := "users:\n  - username: marco\n    password_hash: \"$2a$10$abcdefghijklmnopqrstuuJ2b6Zb9i7U6d9KQ1e3eVwzv7g0lq7y\"\n"
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"signing.key": string(key),
		"users.yaml":  users,
		"kustomization.yaml": `resources:
  - ` + rel + `
secretGenerator:
  - name: tokengate-secrets
    behavior: replace
    files:
      - signing.key
      - users.yaml
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := load(t, dir)
	if len(b.secrets) != 1 {
		t.Fatalf("secrets = %v, want the one replaced Secret", b.secrets)
	}
	for name, s := range b.secrets {
		if string(s.Data["signing.key"]) != string(key) || string(s.Data["users.yaml"]) != users || len(s.StringData) != 0 {
			t.Errorf("Secret %s does not hold the generated files only: %v", name, s)
		}
	}
	for _, err := range sidecarProblemsWithData(b) {
		t.Error(err)
	}
}

// sidecarProblemsWithData is sidecarProblems for Secrets that carry data
// rather than stringData (generated ones).
func sidecarProblemsWithData(b bundle) []error {
	for _, s := range b.secrets {
		if s.StringData == nil {
			s.StringData = map[string]string{}
		}
		for k, v := range s.Data {
			s.StringData[k] = string(v)
		}
	}
	return sidecarProblems(b)
}

// TestNoPrivateKeyCommitted: the Secrets hold placeholders only.
func TestNoPrivateKeyCommitted(t *testing.T) {
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "PRIVATE "+"KEY-----") { // split so this file does not match itself
			t.Errorf("%s contains a PEM private key", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range kustomizations(t) {
		for name, s := range load(t, dir).secrets {
			for k, v := range s.StringData {
				if !strings.Contains(v, "REPLACE") {
					t.Errorf("%s: Secret %s key %s has no REPLACE ME marker", dir, name, k)
				}
			}
		}
	}
}
