// Package packetflow runs kube-proxy's own packet-flow tests against
// rulegen.
//
// kube-proxy v1.37.2's proxier tests (pkg/proxy/nftables/proxier_test.go
// and pkg/proxy/iptables/proxier_test.go) describe, in runPacketFlowTests
// tables, what happens to a packet for a given set of Services and
// EndpointSlices: the endpoints it may reach, REJECT, DROP or nothing (""),
// and whether it is masqueraded. Each directory under testdata/ holding a
// packets.txt is one such setup, translated by hand from the upstream Go
// code and named after the upstream test (see testdata/README.md for the
// file formats). The test loads it the way `rulegen trace` does
// (pkg/manifest, rules.State, sync.Render, trace.Trace) and compares every
// packet with upstream's expectation.
//
// Known, deliberate or not yet fixed differences are listed in a
// scenario's differences.txt; a listed case must still differ, so that a
// fix that makes rulegen agree also removes the line.
package packetflow
