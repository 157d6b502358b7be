package deploy

import (
	"errors"
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/json"
)

// types maps apiVersion/kind to the Go type an object must decode into.
// An object of any other kind is an error: add its type here first.
var types = map[string]func() any{
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1/PersistentVolumeClaim":                func() any { return &corev1.PersistentVolumeClaim{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"networking.k8s.io/v1/Ingress":            func() any { return &networkingv1.Ingress{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
}

// Decode decodes o into its API type, strictly: an unknown field, a field
// spelt with the wrong case, or a duplicate field is an error (the API
// server would drop the first two silently).
func Decode(o Object) (any, error) {
	newT, ok := types[o.APIVersion+"/"+o.Kind]
	if !ok {
		return nil, fmt.Errorf("%s: no API type known for %s %s", o.ID(), o.APIVersion, o.Kind)
	}
	v := newT()
	strict, err := json.UnmarshalStrict(o.JSON, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.ID(), err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%s: %w", o.ID(), errors.Join(strict...))
	}
	return v, nil
}
