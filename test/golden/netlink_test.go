package golden

import (
	"strings"
	"testing"

	"github.com/rulegen/rulegen/pkg/sync/nftwriter"
	"github.com/rulegen/rulegen/test/netnstest"
)

// TestNetlinkMatchesScript applies every golden scenario twice, in two
// scratch namespaces: once as the `nft -f` script --dry-run prints, once
// through the netlink writer. The kernel must then list the same table:
// what the daemon writes is what the dry run shows.
func TestNetlinkMatchesScript(t *testing.T) {
	netnstest.Require(t, "nft")
	byScript := netnstest.New(t, "script")
	byNetlink := netnstest.New(t, "netlink")
	w := nftwriter.New(byNetlink.Fd())
	compared := 0
	for _, sc := range scenarios(t) {
		_, desired := renderAll(t, sc, false)
		for name, d := range desired {
			if d.NFTables == nil {
				continue
			}
			t.Run(sc.name+"/"+name, func(t *testing.T) {
				byScript.MustRun([]byte(d.NFTables.Script()), "nft", "-f", "-")
				w.Invalidate() // a full write each time
				if _, err := w.Apply(d.NFTables); err != nil {
					t.Fatalf("netlink writer: %v", err)
				}
				fam := d.NFTables.TableFamily()
				want := byScript.MustRun(nil, "nft", "list", "table", fam, "rulegen")
				got := byNetlink.MustRun(nil, "nft", "list", "table", fam, "rulegen")
				if got != want {
					t.Errorf("netlink writer and nft -f disagree:\n%s", diff(want, got))
				}
				compared++
			})
		}
	}
	if compared == 0 {
		t.Fatal("compared nothing")
	}
	_ = strings.TrimSpace
}
