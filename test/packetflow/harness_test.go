package packetflow

import (
	"net/netip"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules/trace"
)

// TestNormalize pins how upstream's expected output is read: endpoint
// lists in any order and spacing compare equal; verdicts stay as they are.
func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"one endpoint", "10.180.0.1:80", "10.180.0.1:80"},
		{"sorted", "10.180.2.1:80, 10.180.0.1:80", "10.180.0.1:80, 10.180.2.1:80"},
		{"no space", "10.180.2.1:80,10.180.0.1:80", "10.180.0.1:80, 10.180.2.1:80"},
		{"ipv6", "[fd00:10:180::2:1]:80, [fd00:10:180::1]:80", "[fd00:10:180::1]:80, [fd00:10:180::2:1]:80"},
		{"reject", "REJECT", "REJECT"},
		{"drop", "DROP", "DROP"},
		{"untouched", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := normalize(tc.in); got != tc.want {
				t.Errorf("normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestSummarize pins how trace outcomes become upstream's terms.
func TestSummarize(t *testing.T) {
	ep := func(s string, masq bool) trace.Outcome {
		return trace.Outcome{Verdict: trace.DNAT, Endpoint: netip.MustParseAddrPort(s), Masquerade: masq}
	}
	for _, tc := range []struct {
		name string
		in   []trace.Outcome
		want outcome
	}{
		{"endpoints as a set", []trace.Outcome{ep("10.180.2.1:80", false), ep("10.180.0.1:80", false), ep("10.180.0.1:80", false)},
			outcome{"10.180.0.1:80, 10.180.2.1:80", "no"}},
		{"masqueraded", []trace.Outcome{ep("10.180.0.1:80", true)}, outcome{"10.180.0.1:80", "yes"}},
		{"mixed masquerade", []trace.Outcome{ep("10.180.0.1:80", true), ep("10.180.2.1:80", false)},
			outcome{"10.180.0.1:80, 10.180.2.1:80", "mixed"}},
		{"reject", []trace.Outcome{{Verdict: trace.Reject}}, outcome{"REJECT", "no"}},
		{"drop", []trace.Outcome{{Verdict: trace.Drop}}, outcome{"DROP", "no"}},
		{"pass", []trace.Outcome{{Verdict: trace.Pass}}, outcome{"", "no"}},
		{"endpoint or drop", []trace.Outcome{ep("10.180.0.1:80", false), {Verdict: trace.Drop}},
			outcome{"10.180.0.1:80, DROP", "no"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := summarize(&trace.Result{Outcomes: tc.in}); got != tc.want {
				t.Errorf("summarize = %+v, want %+v", got, tc.want)
			}
		})
	}
}
