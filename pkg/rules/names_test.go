package rules

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// nftIdentifier is nft's identifier grammar (scanner.l: a letter, '_' or
// '.', then letters, digits, '/', '-', '_', '.').
var nftIdentifier = regexp.MustCompile(`^[A-Za-z_.][A-Za-z0-9/_.-]*$`)

func TestReadable(t *testing.T) {
	long := strings.Repeat("a", 300)
	room := MaxNFTName - len("service-") - 8 - 1
	tests := []struct {
		name string
		key  string
		want string // "" means: only check the invariants
	}{
		{name: "valid key is kept as is", key: "default/web/tcp/http", want: "service-" + Hash("default/web/tcp/http", 8) + "-default/web/tcp/http"},
		{name: "endpoint key with an IPv6 address", key: "ns/svc/tcp/__fd00.244.1..5/8080", want: "service-" + Hash("ns/svc/tcp/__fd00.244.1..5/8080", 8) + "-ns/svc/tcp/__fd00.244.1..5/8080"},
		{name: "key exactly filling the room", key: strings.Repeat("b", room), want: "service-" + Hash(strings.Repeat("b", room), 8) + "-" + strings.Repeat("b", room)},
		{name: "key one byte too long is cut", key: strings.Repeat("b", room+1), want: "service-" + Hash(strings.Repeat("b", room+1), 8) + "-" + strings.Repeat("b", room)},
		{name: "newline and injected rule", key: "ns/a\n}\nchain x {/tcp/", want: "service-" + Hash("ns/a\n}\nchain x {/tcp/", 8) + "-ns/a___chain_x__/tcp/"},
		{name: "quotes, semicolons, hash, backslash, space", key: "ns/\"';{}# \\/tcp/p"},
		{name: "unicode", key: "ns/sérvice/tcp/ポート"},
		{name: "NUL and CR", key: "ns/a\x00b\rc/tcp/"},
		{name: "zone in an address", key: "ns/svc/tcp/__fd00..5%eth0 -A INPUT/80"},
		{name: "300-byte name", key: "ns/" + long + "/tcp/"},
		{name: "300-byte name of hostile bytes", key: "ns/" + strings.Repeat("\n", 300) + "/tcp/"},
		{name: "empty key", key: "", want: "service-" + Hash("", 8) + "-"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Readable("service-", tt.key)
			if tt.want != "" && got != tt.want {
				t.Errorf("Readable(%q) = %q, want %q", tt.key, got, tt.want)
			}
			if !nftIdentifier.MatchString(got) {
				t.Errorf("Readable(%q) = %q: not an nft identifier", tt.key, got)
			}
			if len(got) > MaxNFTName {
				t.Errorf("Readable(%q) is %d bytes, the kernel allows %d", tt.key, len(got), MaxNFTName)
			}
			if h := "service-" + Hash(tt.key, 8) + "-"; !strings.HasPrefix(got, h) {
				t.Errorf("Readable(%q) = %q: does not start with the hash of the full key %q", tt.key, got, h)
			}
			if other, dup := seen[got]; dup {
				t.Errorf("keys %q and %q share the name %q", other, tt.key, got)
			}
			seen[got] = tt.key
		})
	}
}

// TestReadableEveryByte checks every single byte, alone and repeated past
// the length limit.
func TestReadableEveryByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		for _, key := range []string{string([]byte{byte(c)}), strings.Repeat(string([]byte{byte(c)}), 400)} {
			got := Readable("endpoint-", key)
			if !nftIdentifier.MatchString(got) || len(got) > MaxNFTName {
				t.Errorf("byte %#x (key length %d): name %q is not a valid nft name", c, len(key), got)
			}
		}
	}
}

func TestPortKey(t *testing.T) {
	spn := func(ns, name, port string, proto Protocol) ServicePortName {
		return ServicePortName{ServiceKey: ServiceKey{ns, name}, Port: port, Protocol: proto}
	}
	tests := []struct {
		name string
		n    ServicePortName
		want string
	}{
		{name: "valid names are written plainly", n: spn("default", "web", "http", TCP), want: "default/web/tcp/http"},
		{name: "unnamed port", n: spn("default", "web", "", UDP), want: "default/web/udp/"},
		{name: "a slash quotes every field", n: spn("a/b", "c", "", TCP), want: `"a/b"/"c"/"tcp"/""`},
		{name: "a quote quotes every field", n: spn("a", `b"c`, "p", TCP), want: `"a"/"b\"c"/"tcp"/"p"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PortKey(tt.n); got != tt.want {
				t.Errorf("PortKey(%+v) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
}

// TestPortKeyUnique checks that ports whose plain keys would be equal get
// different keys, hence different chains.
func TestPortKeyUnique(t *testing.T) {
	groups := [][]ServicePortName{
		{ // "a/b/c/tcp/" written plainly
			{ServiceKey: ServiceKey{"a/b", "c"}, Protocol: TCP},
			{ServiceKey: ServiceKey{"a", "b/c"}, Protocol: TCP},
			{ServiceKey: ServiceKey{"a", "b"}, Protocol: "c/tcp"},
		},
		{ // a quoted key imitated by plain fields
			{ServiceKey: ServiceKey{"a/b", "c"}, Port: "p", Protocol: TCP},
			{ServiceKey: ServiceKey{`"a`, `b"`}, Port: "p", Protocol: TCP},
		},
	}
	for i, g := range groups {
		seen := map[string]ServicePortName{}
		for _, n := range g {
			k := PortKey(n)
			if o, dup := seen[k]; dup {
				t.Errorf("group %d: %+v and %+v share the key %q", i, o, n, k)
			}
			seen[k] = n
		}
	}
}

func TestEndpointKeyDropsZone(t *testing.T) {
	n := ServicePortName{ServiceKey: ServiceKey{"ns", "svc"}, Protocol: TCP}
	e := Endpoint{IP: netip.MustParseAddr("fd00:244::5%x\n-A INPUT -j DROP"), Port: 80}
	if got, want := EndpointKey(n, e), "ns/svc/tcp/__fd00.244..5/80"; got != want {
		t.Errorf("EndpointKey = %q, want %q", got, want)
	}
}

// TestNameShortcuts checks that the functions that build names without the
// key as a string give the names the key would.
func TestNameShortcuts(t *testing.T) {
	tests := []struct {
		name string
		n    ServicePortName
		ip   string
	}{
		{name: "valid", n: ServicePortName{ServiceKey: ServiceKey{"default", "web"}, Port: "http", Protocol: TCP}, ip: "10.244.1.5"},
		{name: "IPv6 with zone", n: ServicePortName{ServiceKey: ServiceKey{"default", "web"}, Protocol: UDP}, ip: "fd00:244::5%eth0"},
		{name: "quoted key", n: ServicePortName{ServiceKey: ServiceKey{"a/b", "c\n"}, Port: `"`, Protocol: SCTP}, ip: "10.0.0.1"},
		{name: "long", n: ServicePortName{ServiceKey: ServiceKey{strings.Repeat("n", 300), "x"}, Protocol: TCP}, ip: "::ffff:10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Endpoint{IP: netip.MustParseAddr(tt.ip), Port: 8080}
			if got, want := ReadablePort("service-", tt.n), Readable("service-", PortKey(tt.n)); got != want {
				t.Errorf("ReadablePort = %q, want %q", got, want)
			}
			if got, want := ReadableEndpoint("endpoint-", tt.n, e), Readable("endpoint-", EndpointKey(tt.n, e)); got != want {
				t.Errorf("ReadableEndpoint = %q, want %q", got, want)
			}
			if got, want := PortHash(tt.n, 16), Hash(PortKey(tt.n), 16); got != want {
				t.Errorf("PortHash = %q, want %q", got, want)
			}
			if got, want := EndpointHash(tt.n, e, 16), Hash(EndpointKey(tt.n, e), 16); got != want {
				t.Errorf("EndpointHash = %q, want %q", got, want)
			}
		})
	}
}
