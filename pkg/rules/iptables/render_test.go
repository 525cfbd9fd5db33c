package iptables

import (
	"regexp"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	"github.com/rulegen/rulegen/pkg/rules/rulestest"
)

// ruleLine is the only shape of rule line Restore may print: a rule of an
// RG- chain whose comment, if any, is quoted printable ASCII without quotes
// or backslashes, at most MaxComment bytes.
var ruleLine = regexp.MustCompile(`^-A RG-[A-Z0-9-]+ (-m comment --comment "[ !#-\[\]-~]{0,255}" )?[-!A-Za-z0-9./:,\[\] ]+$`)

// jumpLines are the fixed lines of the jumps from the built-in chains and
// the comment above them: nothing of the model reaches them.
var jumpLines = func() map[string]bool {
	m := map[string]bool{}
	for _, j := range Jumps() {
		m["-I "+j.Rule()] = true
	}
	for _, l := range strings.Split(strings.TrimSuffix(JumpNote, "\n"), "\n") {
		m[l] = true
	}
	return m
}()

func TestRenderHostileInput(t *testing.T) {
	tests := []struct {
		name                   string
		fam                    rules.Family
		ns, svc, port          string
		proto                  rules.Protocol
		clusterIP, endpoint    string
		wantRules              bool   // false: no service chain (the port or its endpoint is left out)
		wantComment, notInText string // a comment the output must hold; a string it must not
	}{
		{name: "valid names are kept", fam: rules.IPv4, ns: "default", svc: "web", port: "http", proto: rules.TCP,
			clusterIP: "10.96.0.1", endpoint: "10.244.1.5", wantRules: true, wantComment: `"default/web:http -> 10.244.1.5:8080"`},
		{name: "newline in the port name", fam: rules.IPv4, ns: "default", svc: "web", port: "p\n-A INPUT -j DROP", proto: rules.TCP,
			clusterIP: "10.96.0.1", endpoint: "10.244.1.5", wantRules: true, wantComment: `"default/web:p?-A INPUT -j DROP cluster IP"`, notInText: "\n-A INPUT"},
		{name: "quote and backslash in the name", fam: rules.IPv4, ns: "default", svc: `w"e\`, port: "", proto: rules.TCP,
			clusterIP: "10.96.0.1", endpoint: "10.244.1.5", wantRules: true, wantComment: `"default/w'e/ cluster IP"`},
		{name: "unicode, CR and NUL", fam: rules.IPv4, ns: "dé", svc: "a\rb\x00c", port: "", proto: rules.TCP,
			clusterIP: "10.96.0.1", endpoint: "10.244.1.5", wantRules: true, wantComment: `"d??/a?b?c cluster IP"`},
		{name: "300-byte name is cut", fam: rules.IPv4, ns: "default", svc: strings.Repeat("x", 300), port: "", proto: rules.TCP,
			clusterIP: "10.96.0.1", endpoint: "10.244.1.5", wantRules: true, wantComment: `"default/` + strings.Repeat("x", MaxComment-len("default/")) + `"`},
		{name: "zone on the endpoint is dropped", fam: rules.IPv6, ns: "default", svc: "web", port: "", proto: rules.TCP,
			clusterIP: "fd00:96::1", endpoint: "fd00:244::5%x\n-A INPUT -j DROP", wantRules: true, wantComment: `"default/web -> [fd00:244::5]:8080"`, notInText: "%"},
		{name: "zone on the cluster IP is dropped", fam: rules.IPv6, ns: "default", svc: "web", port: "", proto: rules.TCP,
			clusterIP: "fd00:96::1%eth0", endpoint: "fd00:244::5", wantRules: true, wantComment: `"default/web cluster IP"`, notInText: "%"},
		{name: "unknown protocol skips the port", fam: rules.IPv4, ns: "default", svc: "web", port: "", proto: "tcp -j DROP\n-A INPUT",
			clusterIP: "10.96.0.1", endpoint: "10.244.1.5", wantRules: false, notInText: "-A INPUT"},
		{name: "endpoint of the other family is dropped", fam: rules.IPv4, ns: "default", svc: "web", port: "", proto: rules.TCP,
			clusterIP: "10.96.0.1", endpoint: "fd00:244::5", wantRules: false, notInText: "fd00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := Render(rulestest.OnePort(tt.fam, tt.ns, tt.svc, tt.port, tt.proto, tt.clusterIP, tt.endpoint, "")).Restore(nil)
			hasRules := false
			for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
				switch {
				case strings.HasPrefix(l, "*"), strings.HasPrefix(l, ":RG-"), l == "COMMIT", jumpLines[l]:
				case ruleLine.MatchString(l):
					hasRules = hasRules || strings.Contains(l, prefixService)
				default:
					t.Errorf("line not of a shape the renderer asks for: %q", l)
				}
			}
			if hasRules != tt.wantRules {
				t.Errorf("service rules rendered: %v, want %v\n%s", hasRules, tt.wantRules, text)
			}
			if tt.wantComment != "" && !strings.Contains(text, "--comment "+tt.wantComment) {
				t.Errorf("no comment %s in:\n%s", tt.wantComment, text)
			}
			if tt.notInText != "" && strings.Contains(text, tt.notInText) {
				t.Errorf("output holds %q:\n%s", tt.notInText, text)
			}
		})
	}
}
