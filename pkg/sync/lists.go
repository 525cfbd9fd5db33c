package sync

import (
	"os"

	clientfeatures "k8s.io/client-go/features"
)

// WatchListEnv is the environment variable that sets client-go's
// WatchListClient gate (client-go reads KUBE_FEATURE_<gate>).
const WatchListEnv = "KUBE_FEATURE_WatchListClient"

// PreferLists makes the informers start from a plain LIST again instead of
// a watch that streams the initial objects (client-go's WatchListClient
// gate, on by default since client-go v1.35), unless the environment
// sets the gate (WatchListEnv). Measured on the scale harness (5,000
// services x 10 on a real API server, docs/performance.md): the streamed
// start took 0.71 s for the Services and 0.46 s for the EndpointSlices
// where a LIST of both takes about 0.2 s, and the cold start fell from
// 1.18 s to 0.67 s without it. The API server serves both from its watch
// cache; the stream's point is to spare it the memory of one large
// response, which its streaming LIST encoding now also avoids. Call it
// before the first API client is made (client-go warns when the gates it
// already read are replaced).
func PreferLists() {
	clientfeatures.ReplaceFeatureGates(listGates{clientfeatures.FeatureGates()})
}

// listGates is client-go's gates with WatchListClient off unless the
// environment sets it.
type listGates struct{ clientfeatures.Gates }

func (g listGates) Enabled(f clientfeatures.Feature) bool {
	if f == clientfeatures.WatchListClient {
		if _, set := os.LookupEnv(WatchListEnv); !set {
			return false
		}
	}
	return g.Gates.Enabled(f)
}
