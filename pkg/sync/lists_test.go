package sync

import (
	"os"
	"testing"

	clientfeatures "k8s.io/client-go/features"
)

// TestPreferLists: the informers start from a LIST (WatchListClient off)
// unless the environment sets the gate, and every other gate is
// client-go's.
func TestPreferLists(t *testing.T) {
	base := clientfeatures.FeatureGates()
	g := listGates{base}
	// Without the variable, whatever this environment holds (t.Setenv
	// puts it back after the test).
	t.Setenv(WatchListEnv, "")
	os.Unsetenv(WatchListEnv)
	if g.Enabled(clientfeatures.WatchListClient) {
		t.Error("WatchListClient is on without the environment setting it")
	}
	if !base.Enabled(clientfeatures.WatchListClient) {
		t.Log("note: client-go's own default for WatchListClient is off")
	}
	for _, f := range []clientfeatures.Feature{clientfeatures.InformerResourceVersion, clientfeatures.ClientsAllowCBOR} {
		if g.Enabled(f) != base.Enabled(f) {
			t.Errorf("%s: %v, client-go says %v", f, g.Enabled(f), base.Enabled(f))
		}
	}
	t.Setenv(WatchListEnv, "true")
	if g.Enabled(clientfeatures.WatchListClient) != base.Enabled(clientfeatures.WatchListClient) {
		t.Errorf("with %s set, the gate is not client-go's", WatchListEnv)
	}
}
