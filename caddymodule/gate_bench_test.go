package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// gateRig calls the gate of a running env directly, without the network, so
// that what is measured is the gate's own work.
type gateRig struct {
	h      *Handler // nil: the baseline, no gate
	req    *http.Request
	next   caddyhttp.Handler
	passed string // the Remote-User the upstream last saw
}

func newGateRig(t testing.TB, ssid string) *gateRig {
	ctx := caddy.ActiveContext()
	h := &Handler{}
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/app/page", nil)
	req.Header.Set("Cookie", "authgate_session="+ssid)
	g := &gateRig{h: h, req: req}
	g.next = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		g.passed = r.Header.Get("Remote-User")
		return nil
	})
	return g
}

// serve runs one request through the gate.
func (g *gateRig) serve(t testing.TB) {
	r := g.req.Clone(context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := httptest.NewRecorder()
	var err error
	if g.h == nil {
		err = g.next.ServeHTTP(w, r)
	} else if err = g.h.ServeHTTP(w, r, g.next); g.passed != "bench" {
		t.Fatalf("the gate did not pass the user: %d", w.Code)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkGate measures one gated request with a valid session, served
// from the session cache (the common case).
func BenchmarkGate(b *testing.B) {
	g := newGateRig(b, gateSession(b))
	g.serve(b) // fills the cache
	b.ReportAllocs()
	for b.Loop() {
		g.serve(b)
	}
}

// BenchmarkGateSeedBasic is BenchmarkGate with users_api set and the
// session in the seed client's Authorization: Basic base64(userhash:ssid),
// beside the client's own cookies holding the same.
func BenchmarkGateSeedBasic(b *testing.B) {
	ssid := gateSession(b)
	g := newGateRig(b, ssid)
	g.h.UsersAPI = "/api"
	g.req.Header.Del("Cookie")
	g.req.Header.Set("Authorization", seedBasic(ssid))
	g.req.Header.Set("Cookie", "userhash="+ssid[:32]+"; ssid="+ssid)
	g.serve(b)
	b.ReportAllocs()
	for b.Loop() {
		g.serve(b)
	}
}

// BenchmarkGateBaseline is the same rig without the gate: the difference
// to BenchmarkGate is what the gate costs.
func BenchmarkGateBaseline(b *testing.B) {
	g := newGateRig(b, gateSession(b))
	g.h = nil
	b.ReportAllocs()
	for b.Loop() {
		g.serve(b)
	}
}

// gateSession starts an env with one logged-in user and returns its ssid.
func gateSession(t testing.TB) string {
	e := newEnv(t, options{})
	e.register("bench", "bench-password", "bench@example.com")
	return e.login(e.client(), "bench", "bench-password").str("ssid")
}

// The gate's allocations per request are counted, so that a change that
// makes the hot path heavier shows up as a failing test, not a slow day.
func TestGateAllocations(t *testing.T) {
	g := newGateRig(t, gateSession(t))
	g.serve(t)
	gated := testing.AllocsPerRun(200, func() { g.serve(t) })
	g.h = nil
	base := testing.AllocsPerRun(200, func() { g.serve(t) })
	t.Logf("gate: %.0f allocations per request", gated-base)
	if gated-base > maxGateAllocs {
		t.Fatalf("the gate allocates %.0f times per request, budget %d", gated-base, maxGateAllocs)
	}
}

const maxGateAllocs = 14
