// Package k8s holds the service's Kubernetes manifests: a kustomize base (base/)
// and overlays (overlays/), with the example of the Secret they read
// (secret.example.env). Its tests render every variant with kustomize's own
// library, decode each object strictly into the Kubernetes API types and check
// the invariants the service relies on; no cluster and no kubectl are involved.
package k8s
