//go:build tools

// Package kube pins the commands rulegen's cluster tests build: the real
// kube-apiserver and etcd, kube-proxy (for the migration and scale tests)
// and kubectl (for manifest validation).
package kube

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
