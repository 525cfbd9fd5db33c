package main

import (
	"strings"
	"testing"
)

// TestTraceDetectLocalInterface: `rulegen trace` follows the detect-local
// modes BridgeInterface and InterfaceNamePrefix: --in-interface says where
// the packet arrives (a pod interface makes it pod traffic by default), a
// client arriving elsewhere is masqueraded, and a name that is no
// interface name, or an input interface for the node's own packet, is a
// usage error naming the flag.
func TestTraceDetectLocalInterface(t *testing.T) {
	common := []string{"trace", "-f", "../../examples/", "--node-name", "node-a", "--dst", "10.96.0.10:8080"}
	bridge := []string{"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "cni0"}
	prefix := []string{"--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "veth"}
	tests := []struct {
		name    string
		args    []string
		code    int
		want    string // in stdout, or stderr for a usage error
		notWant string
	}{
		{name: "on the bridge: a pod, source kept", args: append(bridge, "--src", "10.244.1.9", "--in-interface", "cni0"), code: exitOK,
			want: "(from pod, in on cni0)", notWant: "masqueraded"},
		{name: "elsewhere: masqueraded", args: append(bridge, "--src", "10.244.1.5", "--in-interface", "eth1"), code: exitOK,
			want: "masqueraded (client not arriving on the pod bridge cni0)"},
		{name: "a pod by default arrives on the pod interface", args: append(bridge, "--src", "10.244.1.9", "--from", "pod"), code: exitOK,
			notWant: "masqueraded"},
		{name: "a veth: a pod", args: append(prefix, "--src", "192.168.50.10", "--in-interface", "veth12ab"), code: exitOK,
			want: "(from pod, in on veth12ab)", notWant: "masqueraded"},
		{name: "another name: masqueraded", args: append(prefix, "--src", "192.168.50.10", "--in-interface", "eth0"), code: exitOK,
			want: "masqueraded (client not arriving on an interface named veth*)"},
		{name: "not an interface name", args: append(prefix, "--src", "192.168.50.10", "--in-interface", "eth0 -j"), code: exitUsage,
			want: `--in-interface: "eth0 -j" may hold only`},
		{name: "the node has no input interface", args: append(prefix, "--src", "192.168.50.10", "--from", "node", "--in-interface", "veth1"), code: exitUsage,
			want: "--in-interface: a packet from the node has no input interface"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t, "", append(append([]string{}, common...), tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, errs)
			}
			got := out
			if tc.code != exitOK {
				got = errs
			}
			if !strings.Contains(got, tc.want) || (tc.notWant != "" && strings.Contains(got, tc.notWant)) {
				t.Errorf("want %q and no %q in:\n%s", tc.want, tc.notWant, got)
			}
		})
	}
}
