package nftwriter

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/rules"
	rn "github.com/rulegen/rulegen/pkg/rules/nftables"
)

// TestTypeofUserData: the user data of a map of endpoints is, byte for
// byte, what nft 1.0.6 writes for the declaration the renderer prints
// (captured with `nft --debug=mnl -f`, little-endian host), so that nft
// lists a map the daemon wrote as it lists one loaded from the dry run.
func TestTypeofUserData(t *testing.T) {
	hexOf := func(s string) string { return strings.Join(strings.Fields(s), "") }
	tests := []struct {
		name string
		fam  rules.Family
		key  rn.KeyType
		want string
	}{
		{name: "typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport", fam: rules.IPv4, key: rn.KeyAddrProtoPortSlot,
			want: `00 04 00 00 00 00 01 04 00 00 00 00 03 60 00 04 0d 00 00 00 01 58 00 14 00 04 07 00 00 00 01 0c 00 04 0c 00 00 00 01 04 0c 00 00 00
				01 0e 00 04 09 00 00 00 01 06 00 04 10 00 00 00 02 14 00 04 07 00 00 00 01 0c 00 04 0b 00 00 00 01 04 02 00 00 00 03 1a 00 04 17 00 00 00
				01 12 00 04 01 00 00 00 01 04 01 00 00 00 02 04 00 00 00 00 04 34 00 04 0d 00 00 00 01 2c 00 14 00 04 07 00 00 00 01 0c 00 04 0c 00 00 00
				01 04 0c 00 00 00 01 14 00 04 07 00 00 00 01 0c 00 04 0b 00 00 00 01 04 02 00 00 00 06 04 00 00 00 00`},
		{name: "typeof meta l4proto . th dport . numgen random mod 1 : ip6 daddr . th dport", fam: rules.IPv6, key: rn.KeyProtoPortSlot,
			want: `00 04 00 00 00 00 01 04 00 00 00 00 03 4a 00 04 0d 00 00 00 01 42 00 0e 00 04 09 00 00 00 01 06 00 04 10 00 00 00 01 14 00 04 07 00 00 00
				01 0c 00 04 0b 00 00 00 01 04 02 00 00 00 02 1a 00 04 17 00 00 00 01 12 00 04 01 00 00 00 01 04 01 00 00 00 02 04 00 00 00 00 04 34 00 04
				0d 00 00 00 01 2c 00 14 00 04 07 00 00 00 01 0c 00 04 0d 00 00 00 01 04 09 00 00 00 01 14 00 04 07 00 00 00 01 0c 00 04 0b 00 00 00 01 04
				02 00 00 00 06 04 00 00 00 00`},
		{name: "a set nft declares with type: none of rulegen's", fam: rules.IPv4, key: rn.KeyAddrProtoPort, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hex.EncodeToString(typeofUserData(tt.fam, tt.key)); got != hexOf(tt.want) {
				t.Errorf("user data\n%s\nwant\n%s", got, hexOf(tt.want))
			}
		})
	}
}
