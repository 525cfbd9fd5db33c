package trace

import (
	"fmt"
	"strings"
)

// Text renders a result for people: the packet, then each outcome with its
// probability, verdict and reason, and the path through the ruleset.
func (res *Result) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", res.Packet)
	if res.Affinity {
		b.WriteString("sessionAffinity ClientIP: the first connection goes as below; later ones from this client stick to the same endpoint\n")
	}
	for i, o := range res.Outcomes {
		fmt.Fprintf(&b, "\n%d. %5.1f%%  %s", i+1, 100*o.Probability, o.Verdict)
		if o.Verdict == DNAT {
			fmt.Fprintf(&b, " to %s", o.Endpoint)
		}
		fmt.Fprintf(&b, ": %s\n", o.Why)
		for _, s := range o.Steps {
			fmt.Fprintf(&b, "   %s\n", s)
		}
	}
	if res.Note != "" {
		fmt.Fprintf(&b, "\nnote: %s\n", res.Note)
	}
	return b.String()
}

// Summary is Text without the paths: one line per outcome.
func (res *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", res.Packet)
	for _, o := range res.Outcomes {
		fmt.Fprintf(&b, "  %5.1f%%  %s", 100*o.Probability, o.Verdict)
		if o.Verdict == DNAT {
			fmt.Fprintf(&b, " to %s", o.Endpoint)
		}
		fmt.Fprintf(&b, ": %s\n", o.Why)
	}
	if res.Affinity {
		b.WriteString("  (sessionAffinity ClientIP: later connections stick to the first endpoint)\n")
	}
	if res.Note != "" {
		fmt.Fprintf(&b, "  note: %s\n", res.Note)
	}
	return b.String()
}
