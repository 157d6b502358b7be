package deploy

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

const recipeSecrets = `secretGenerator:
  - name: tokengate-secrets
    behavior: replace
    files: [signing.key, users.yaml]
`

// Images can be pinned by digest in an overlay (deploy/README.md, step 1):
// the base's image names are what an overlay's images: entries match.
func TestImagesPinnableByDigest(t *testing.T) {
	const (
		tgDigest  = "sha256:" + "1111111111111111111111111111111111111111111111111111111111111111"
		appDigest = "sha256:" + "2222222222222222222222222222222222222222222222222222222222222222"
	)
	b := buildRecipe(t, map[string]string{
		"signing.key": "k", "users.yaml": "users: []\n",
		"kustomization.yaml": `resources: [BASE]
images:
  - name: ghcr.io/example/tokengate
    newName: registry.example.com/tokengate
    digest: ` + tgDigest + `
  - name: hashicorp/http-echo
    digest: ` + appDigest + `
` + recipeSecrets,
	})
	want := map[string]string{
		sidecarName: "registry.example.com/tokengate@" + tgDigest,
		"app":       "hashicorp/http-echo@" + appDigest,
	}
	for _, c := range b.deployments[0].Spec.Template.Spec.Containers {
		if c.Image != want[c.Name] {
			t.Errorf("container %s image %q, want %q", c.Name, c.Image, want[c.Name])
		}
	}
	if errs := sidecarProblemsWithData(b); len(errs) != 0 {
		t.Errorf("pinned recipe: %v", errs)
	}
}

// The namespace allowed to reach the admin port (metrics, probes, the
// operator endpoint) is one patch away in an overlay, and never opens the
// admin port to every namespace.
func TestAdminNetworkPolicyNamespaceConfigurable(t *testing.T) {
	b := buildRecipe(t, map[string]string{
		"signing.key": "k", "users.yaml": "users: []\n",
		"kustomization.yaml": `resources: [BASE]
patches:
  - target: {kind: NetworkPolicy, name: echo}
    patch: |-
      - op: replace
        path: /spec/ingress/1/from/0/namespaceSelector/matchLabels/kubernetes.io~1metadata.name
        value: observability
` + recipeSecrets,
	})
	got := adminNamespaces(b)
	if len(got) != 1 || got[0] != "observability" {
		t.Fatalf("admin port reachable from namespaces %v, want [observability]", got)
	}
	for _, dir := range kustomizations(t) {
		if ns := adminNamespaces(load(t, dir)); len(ns) == 0 {
			t.Errorf("%s: the admin port is open to every namespace or to none (%v); want a namespaceSelector", dir, ns)
		}
	}
}

// adminNamespaces lists the namespaces the NetworkPolicies admit to the
// admin port 9091 (nil if a rule admits any source).
func adminNamespaces(b bundle) []string {
	var out []string
	for _, np := range b.netpols {
		for _, rule := range np.Spec.Ingress {
			admin := false
			for _, p := range rule.Ports {
				if p.Port != nil && *p.Port == intstr.FromInt32(9091) {
					admin = true
				}
			}
			if !admin {
				continue
			}
			for _, peer := range rule.From {
				if peer.NamespaceSelector == nil || peer.PodSelector != nil {
					return nil
				}
				out = append(out, strings.TrimSpace(peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]))
			}
			if len(rule.From) == 0 {
				return nil
			}
		}
	}
	return out
}
