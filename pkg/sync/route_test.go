package sync

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestExtraRoutes: Serve's extra routes (the daemon's /configz) are served
// on the metrics address only.
func TestExtraRoutes(t *testing.T) {
	route := Route{Path: "/configz", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "config") })}
	tests := []struct {
		name string
		addr string
		code int
	}{
		{name: "metrics address", addr: "127.0.0.1:10249", code: http.StatusOK},
		{name: "health address", addr: "0.0.0.0:10256", code: http.StatusNotFound},
	}
	servers := map[string]*http.Server{}
	for _, srv := range statusServers("0.0.0.0:10256", "127.0.0.1:10249", false, nil, NewMetrics(), route) {
		servers[srv.Addr] = srv
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			servers[tc.addr].Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/configz", nil))
			if rec.Code != tc.code || (tc.code == http.StatusOK && rec.Body.String() != "config") {
				t.Errorf("GET /configz on %s: %d %q, want %d", tc.addr, rec.Code, rec.Body.String(), tc.code)
			}
		})
	}
}
