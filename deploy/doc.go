// Package deploy holds no code: its tests check that the deployment files
// beside them (systemd unit, Kubernetes manifests, Prometheus rules, Grafana
// dashboard, the repository's Dockerfile) parse and keep the settings the
// operations guide promises.
package deploy
