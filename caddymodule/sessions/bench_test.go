package sessions

import (
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// BenchmarkLookup is the gate's read of a session from Redis (no cache):
// what every request costs on a cache miss, and on every request with
// session_cache off.
func BenchmarkLookup(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"idle off", Config{TTL: time.Hour, MaxPerUser: 10}},
		{"idle on", Config{TTL: time.Hour, Idle: time.Hour, MaxPerUser: 10}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, _ := newStore(b, testenv.Topology{Name: "single", URL: testenv.RedisURL(b)}, tc.cfg)
			token, _, err := s.Create(b.Context(), Session{UserID: 7, Userhash: alice, Username: "alice",
				Email: "alice@example.com", IP: "192.0.2.1", Device: "Firefox on Linux", AMR: []string{"pwd"}})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Lookup(b.Context(), token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
