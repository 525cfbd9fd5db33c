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
//
// Names must be safe whatever the key holds (the converters validate names,
// but a renderer must not trust them): see Readable for the nftables form;
// the iptables form has no readable part, and its comments are escaped by
// the iptables renderer.

// Hash returns the first n characters of the base32 SHA-256 of s.
func Hash(s string, n int) string {
	var out [56]byte
	return string(appendHash(out[:0], []byte(s), n))
}

// appendHash appends the first n characters of the base32 SHA-256 of key.
func appendHash(b, key []byte, n int) []byte {
	sum := sha256.Sum256(key)
	var buf [56]byte
	enc := buf[:base32.StdEncoding.EncodedLen((n*5+7)/8)]
	base32.StdEncoding.Encode(enc, sum[:(n*5+7)/8]) // encode only the bytes the n characters need
	return append(b, enc[:n]...)
}

// PortKey returns "namespace/name/protocol/portname", the readable key of a
// service port (portname is empty for an unnamed port). The key must name
// one port only, or two ports would share chains: when a field holds a '/'
// or a '"' (never in a valid name), every field is written as a Go quoted
// string instead, "\"a/b\"/\"c\"/\"tcp\"/\"\"", which no plain key can equal.
func PortKey(n ServicePortName) string {
	var buf [128]byte
	return string(appendPortKey(buf[:0], n))
}

func appendPortKey(b []byte, n ServicePortName) []byte {
	fields := [4]string{n.Namespace, n.Name, string(n.Protocol), n.Port}
	plain := true
	for _, f := range fields {
		plain = plain && strings.IndexByte(f, '/') < 0 && strings.IndexByte(f, '"') < 0
	}
	for i, f := range fields {
		if i > 0 {
			b = append(b, '/')
		}
		if plain {
			b = append(b, f...)
		} else {
			b = strconv.AppendQuote(b, f)
		}
	}
	return b
}

// EndpointKey returns "namespace/name/protocol/portname__address/port", with
// the colons of an IPv6 address written as dots (a colon is not allowed in an
// nft identifier). An IPv6 zone is left out: no rule can express one, and
// the renderers drop zones before they name anything (see PrintableService).
func EndpointKey(n ServicePortName, e Endpoint) string {
	var buf [192]byte
	return string(appendEndpointKey(buf[:0], n, e))
}

func appendEndpointKey(b []byte, n ServicePortName, e Endpoint) []byte {
	b = append(appendPortKey(b, n), "__"...)
	start := len(b)
	b = e.IP.WithZone("").AppendTo(b)
	for i := start; i < len(b); i++ {
		if b[i] == ':' {
			b[i] = '.'
		}
	}
	return strconv.AppendInt(append(b, '/'), int64(e.Port), 10)
}

// PortHash and EndpointHash return Hash(PortKey(n), size) and
// Hash(EndpointKey(n, e), size) without building the key as a string.
func PortHash(n ServicePortName, size int) string {
	var buf [128]byte
	var out [56]byte
	return string(appendHash(out[:0], appendPortKey(buf[:0], n), size))
}

// EndpointHash: see PortHash.
func EndpointHash(n ServicePortName, e Endpoint, size int) string {
	var buf [192]byte
	var out [56]byte
	return string(appendHash(out[:0], appendEndpointKey(buf[:0], n, e), size))
}

// MaxNFTName is the longest chain or set name the kernel accepts
// (NFT_NAME_MAXLEN 256, with the terminating NUL); nft refuses the whole
// script when one name is longer.
const MaxNFTName = 255

// nameByte reports whether c may appear in the readable part of a name:
// the characters nft accepts in an identifier after its first one
// ([A-Za-z0-9/._-]). Every valid key is made of them: Kubernetes names and
// port names are lower-case letters, digits and '-', protocols are lower
// case, and EndpointKey writes addresses with digits, hex letters and dots.
func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '/' || c == '.' || c == '_' || c == '-'
}

// Readable returns prefix + Hash(key, 8) + "-" + key, the name of a
// per-service nftables object, in a form nft always parses and the kernel
// always accepts: each byte of key outside [A-Za-z0-9/._-] is written as
// '_', and the key is cut so that the name is at most MaxNFTName bytes. The
// hash is of the full, unaltered key, so two keys never share a name (bar
// a 40-bit hash collision, as before), and the name of a valid key is
// exactly the unaltered form. prefix must itself be a valid identifier
// start (a letter, then name bytes).
func Readable(prefix, key string) string { return readable(prefix, []byte(key)) }

// ReadablePort and ReadableEndpoint return Readable(prefix, PortKey(n)) and
// Readable(prefix, EndpointKey(n, e)) without building the key as a string.
func ReadablePort(prefix string, n ServicePortName) string {
	var buf [128]byte
	return readable(prefix, appendPortKey(buf[:0], n))
}

// ReadableEndpoint: see ReadablePort.
func ReadableEndpoint(prefix string, n ServicePortName, e Endpoint) string {
	var buf [192]byte
	return readable(prefix, appendEndpointKey(buf[:0], n, e))
}

func readable(prefix string, key []byte) string {
	var buf [MaxNFTName]byte
	b := append(buf[:0], prefix...)
	b = append(appendHash(b, key, 8), '-')
	room := MaxNFTName - len(b)
	for i, c := range key {
		if i == room {
			break
		}
		if !nameByte(c) {
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}
