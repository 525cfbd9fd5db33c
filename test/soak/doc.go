// Package soak is the soak harness: one node under churn, faults and
// restarts for a long time, checked for lost connections, exact
// convergence, latency, leaks and stale conntrack entries.
//
//	make soak                                  # SOAK_DURATION=30m, 2000 services x 10 endpoints
//	go test -v -run TestSoak ./test/soak/      # the short run of make test (as root)
//
// It runs the real kube-apiserver and etcd (test/cluster) in a node
// namespace, every pod in one namespace that answers on every address of a
// range (test/scale's topology), a client outside the node and a pod
// client inside the cluster CIDR, and rulegen built with -tags soakfaults
// (cmd/rulegen/faults_soakfaults.go), whose kernel writer refuses a share
// of the transactions. While the churn and the faults run, probes to a set
// of stable services count every connection that a current endpoint did
// not answer. docs/reliability.md describes the faults, the checks and the
// settings; the tests of this package are all in _test.go files.
package soak
