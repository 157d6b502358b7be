package deploy

import (
	"fmt"
	"path/filepath"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// bundle is one kustomize build, decoded.
type bundle struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	pvcs            map[string]*corev1.PersistentVolumeClaim
	pdbs            []*policyv1.PodDisruptionBudget
	netpols         []*networkingv1.NetworkPolicy
	ingresses       []*networkingv1.Ingress
	serviceMonitors []*monitoringv1.ServiceMonitor
	rules           []*monitoringv1.PrometheusRule
}

// kustomizations lists the base and every overlay.
func kustomizations(t *testing.T) []string {
	t.Helper()
	overlays, err := filepath.Glob("kubernetes/overlays/*/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{"kubernetes/base"}
	for _, o := range overlays {
		dirs = append(dirs, filepath.Dir(o))
	}
	return dirs
}

// load builds dir and decodes every object strictly.
func load(t *testing.T, dir string) bundle {
	t.Helper()
	objs, err := Build(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	return decodeBundle(t, dir, objs)
}

// decodeBundle decodes every object strictly (a kustomize build or a
// rendered chart) and sorts them by kind.
func decodeBundle(t *testing.T, dir string, objs []Object) bundle {
	t.Helper()
	b := bundle{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pvcs: map[string]*corev1.PersistentVolumeClaim{}}
	for _, o := range objs {
		v, err := Decode(o)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		switch v := v.(type) {
		case *appsv1.Deployment:
			b.deployments = append(b.deployments, v)
		case *corev1.Service:
			b.services = append(b.services, v)
		case *corev1.ConfigMap:
			b.configMaps[v.Name] = v
		case *corev1.Secret:
			b.secrets[v.Name] = v
		case *corev1.PersistentVolumeClaim:
			b.pvcs[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			b.pdbs = append(b.pdbs, v)
		case *networkingv1.NetworkPolicy:
			b.netpols = append(b.netpols, v)
		case *networkingv1.Ingress:
			b.ingresses = append(b.ingresses, v)
		case *monitoringv1.ServiceMonitor:
			b.serviceMonitors = append(b.serviceMonitors, v)
		case *monitoringv1.PrometheusRule:
			b.rules = append(b.rules, v)
		}
	}
	return b
}

// sidecarConfig is the part of tokengate's config the manifests must agree
// with. Full validation is `tokengate check-config`'s job.
type sidecarConfig struct {
	Listen      string `json:"listen"`
	AdminListen string `json:"admin_listen"`
	Upstream    string `json:"upstream"`
	Server      struct {
		ShutdownDelay string `json:"shutdown_delay"`
		ShutdownGrace string `json:"shutdown_grace"`
	} `json:"server"`
	AdminTokenFile string `json:"admin_token_file"`
	Tokens         struct {
		SigningKeyFile       string   `json:"signing_key_file"`
		VerificationKeyFiles []string `json:"verification_key_files"`
	} `json:"tokens"`
	Users struct {
		Backend string `json:"backend"`
		File    string `json:"file"`
		LDAP    struct {
			BindPasswordFile string `json:"bind_password_file"`
			CAFile           string `json:"ca_file"`
			ClientCertFile   string `json:"client_cert_file"`
			ClientKeyFile    string `json:"client_key_file"`
		} `json:"ldap"`
	} `json:"users"`
	Revocation struct {
		Backend           string `json:"backend"`
		Path              string `json:"path"`
		RedisURL          string `json:"redis_url"`
		RedisPasswordFile string `json:"redis_password_file"`
	} `json:"revocation"`
}

func parseSidecarConfig(data string) (sidecarConfig, error) {
	var c sidecarConfig
	if err := yaml.Unmarshal([]byte(data), &c); err != nil {
		return c, fmt.Errorf("config.yaml: %w", err)
	}
	return c, nil
}
