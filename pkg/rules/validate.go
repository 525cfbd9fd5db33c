package rules

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Validation at the model boundary.
//
// Every string and address that reaches the model passes through the
// converters (ConvertService, ConvertSlice, NodeFromObject), for -f
// manifests and for the daemon's informers alike. They apply the rules the
// Kubernetes API server applies to the same fields, so that a manifest
// holds no object the API would refuse and no renderer ever sees a byte
// that is not a letter, digit, '-' or '.' in a name. Names can then not
// hold '/', the separator of PortKey, so two different service ports never
// share a chain name.

// nameCheck is a name rule of the API server. full is one of the
// validation.Is… functions: it returns why a value is invalid, or nothing.
// fast reports without a regular expression whether a value certainly
// passes: the names of a real cluster do, and the regular expressions were
// half of converting an EndpointSlice (every endpoint has a nodeName). A
// value fast does not vouch for is given to full, so fast may refuse a
// valid value but must never pass an invalid one
// (TestFastNameChecksNeverPassWhatTheAPIRefuses).
type nameCheck struct {
	fast func(string) bool
	full func(string) []string
}

// The name rules, by the API field they apply to.
var (
	// dns1123Label is a namespace, a port name (Service and EndpointSlice).
	dns1123Label = nameCheck{func(s string) bool { return len(s) <= 63 && isDNSLabel(s, false) }, validation.IsDNS1123Label}
	// dns1035Label is a Service name.
	dns1035Label = nameCheck{func(s string) bool { return len(s) <= 63 && isDNSLabel(s, true) }, validation.IsDNS1035Label}
	// dns1123Subdomain is an EndpointSlice or Node name, an endpoint's nodeName.
	dns1123Subdomain = nameCheck{isSubdomain, validation.IsDNS1123Subdomain}
	// labelValue is a zone and the service-name label.
	labelValue = nameCheck{isLabelValue, validation.IsValidLabelValue}
	// portName is a Service's targetPort by name (one per port: no fast
	// path).
	portName = nameCheck{full: validation.IsValidPortName}
)

// invalidName returns why value fails check ("" if it passes). The value is
// quoted, so that a newline or a quote in it cannot forge a log line.
func invalidName(check nameCheck, value string) string {
	if check.fast != nil && check.fast(value) {
		return ""
	}
	msgs := check.full(value)
	if len(msgs) == 0 {
		return ""
	}
	return fmt.Sprintf("%q is invalid: %s", value, strings.Join(msgs, "; "))
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isDNSLabel reports whether s is lower-case letters, digits and '-',
// beginning and ending with a letter or digit (with a letter, letterFirst).
func isDNSLabel(s string, letterFirst bool) bool {
	if s == "" || !(isLower(s[0]) || !letterFirst && isDigit(s[0])) {
		return false
	}
	last := s[len(s)-1]
	if !isLower(last) && !isDigit(last) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLower(c) && !isDigit(c) && c != '-' {
			return false
		}
	}
	return true
}

// isSubdomain reports whether s is at most 253 bytes of DNS labels (of at
// most 63 each) joined by dots.
func isSubdomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) > 63 || !isDNSLabel(label, false) {
			return false
		}
	}
	return true
}

// isLabelValue reports whether s is empty, or at most 63 letters, digits,
// '-', '_' and '.', beginning and ending with a letter or digit.
func isLabelValue(s string) bool {
	if s == "" {
		return true
	}
	alnum := func(c byte) bool { return isLower(c) || isDigit(c) || 'A' <= c && c <= 'Z' }
	return len(s) <= 63 && alnum(s[0]) && alnum(s[len(s)-1]) && plainName(s)
}

// parseIP parses an address from an API field. Unlike netip.ParseAddr it
// rejects an IPv6 zone ("fe80::1%eth0"): the API does too, a zone means
// nothing to a rule, and it would carry arbitrary bytes into one. An
// IPv4-mapped IPv6 address is returned as IPv4, as the kernel sees it.
//
// This is the one place that decides which spellings of an address rulegen
// accepts (the API also accepts IPv4 with leading zeros in its older
// fields; accepting them too is a change to this function only).
func parseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		var ok bool
		if ip, ok = parseLegacyIPv4(s); !ok {
			return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
		}
	}
	if ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address (an IPv6 zone is not allowed)", s)
	}
	return ip.Unmap(), nil
}

// parseCIDR parses a CIDR from an API field (netip.ParsePrefix already
// refuses zones) and returns it masked.
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		addr, bits, found := strings.Cut(s, "/")
		ip, ok := parseLegacyIPv4(addr)
		if !found || !ok {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		if p, err = netip.ParsePrefix(ip.String() + "/" + bits); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
	}
	return p.Masked(), nil
}

// parseLegacyIPv4 parses an IPv4 address written with leading zeros
// ("172.30.0.041"), which API servers before Kubernetes 1.30 accepted and
// older objects may still hold. Like kube-proxy (k8s.io/utils/net
// ParseIPSloppy, Go's parser before 1.17) every part is decimal: 041 is 41,
// never octal. Anything else is not an address.
func parseLegacyIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 {
			return netip.Addr{}, false
		}
		n := 0
		for _, c := range p {
			if c < '0' || c > '9' {
				return netip.Addr{}, false
			}
			n = n*10 + int(c-'0')
		}
		if n > 255 {
			return netip.Addr{}, false
		}
		b[i] = byte(n)
	}
	return netip.AddrFrom4(b), true
}

// parseEndpointIP parses an address that traffic is sent to or accepted on
// (an endpoint address, an external IP), refusing the ranges the API
// refuses there (its ValidateEndpointIP): unspecified, loopback and
// link-local addresses. A service could otherwise redirect the node's own
// loopback traffic.
func parseEndpointIP(s string) (netip.Addr, error) {
	ip, err := parseIP(s)
	if err != nil {
		return ip, err
	}
	switch {
	case ip.IsUnspecified():
		return netip.Addr{}, fmt.Errorf("%s may not be unspecified", ip)
	case ip.IsLoopback():
		return netip.Addr{}, fmt.Errorf("%s may not be in the loopback range (127.0.0.0/8, ::1/128)", ip)
	case ip.IsLinkLocalUnicast():
		return netip.Addr{}, fmt.Errorf("%s may not be in the link-local range (169.254.0.0/16, fe80::/10)", ip)
	case ip.IsLinkLocalMulticast():
		return netip.Addr{}, fmt.Errorf("%s may not be in the link-local multicast range (224.0.0.0/24, ff02::/16)", ip)
	}
	return ip, nil
}

// invalidTargetPort returns why a Service port's targetPort is invalid (""
// if it is valid): a number 1-65535 or a container port name
// (IANA_SVC_NAME), as the API requires. 0 and "" are unset (the API server
// defaults them to the port).
func invalidTargetPort(tp intstr.IntOrString) string {
	switch {
	case tp.Type == intstr.Int && tp.IntVal == 0, tp.Type == intstr.String && tp.StrVal == "":
		return ""
	case tp.Type == intstr.Int:
		if tp.IntVal < 1 || tp.IntVal > 65535 {
			return fmt.Sprintf("%d is out of range (1-65535)", tp.IntVal)
		}
		return ""
	}
	return invalidName(portName, tp.StrVal)
}
