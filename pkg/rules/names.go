package rules

import (
	"crypto/sha256"
	"encoding/base32"
	"strconv"
	"strings"
)

// Chain naming, shared by both backends.
//
// A per-service object is named after what it serves so that a reader of
// `nft list ruleset` or `iptables-save` can find it: the service port key
// "namespace/name/protocol/portname" (see PortKey) and, for an endpoint,
// "…__address/port" (see EndpointKey). A short hash of the full key makes the
// name unique even when the readable part must be cut: nftables allows long
// names, so its names are "kind-HASH8-key"; iptables allows 28 characters, so
// its names are "RG-KIND-HASH16" and the readable key goes into a rule
// comment instead. The hash is the first characters of the base32 SHA-256 of
// the key, so names are stable across restarts and nodes.

// Hash returns the first n characters of the base32 SHA-256 of s.
func Hash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	var buf [56]byte
	enc := buf[:base32.StdEncoding.EncodedLen((n*5+7)/8)]
	base32.StdEncoding.Encode(enc, sum[:(n*5+7)/8]) // encode only the bytes the n characters need
	return string(enc[:n])
}

// PortKey returns "namespace/name/protocol/portname", the readable key of a
// service port (portname is empty for an unnamed port).
func PortKey(n ServicePortName) string {
	return n.Namespace + "/" + n.Name + "/" + string(n.Protocol) + "/" + n.Port
}

// EndpointKey returns "namespace/name/protocol/portname__address/port", with
// the colons of an IPv6 address written as dots (a colon is not allowed in an
// nft identifier).
func EndpointKey(n ServicePortName, e Endpoint) string {
	return PortKey(n) + "__" + strings.ReplaceAll(e.IP.String(), ":", ".") + "/" + strconv.Itoa(int(e.Port))
}
