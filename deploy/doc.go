// Package deploy checks tokengate's deployment files: it builds every
// kustomization in-process (krusty, no kubectl), decodes each object
// strictly into its API type, and checks the sidecar invariants, the
// Dockerfile, and the metric names the dashboard and alerts use. The files
// themselves live beside it: kubernetes/, dashboards/, metrics-used.txt.
package deploy
