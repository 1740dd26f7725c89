package gatepath_test

import (
	"testing"

	"github.com/authgate/authgate/caddymodule/gatepath"
	"github.com/authgate/authgate/caddymodule/gatepath/gatepathtest"
)

// FuzzPublic: a request-target the gate judges public is public to every
// model upstream. The hostile paths are the seeds, run by plain go test.
func FuzzPublic(f *testing.F) {
	for _, tc := range gatepathtest.Hostile {
		f.Add(tc.Target)
	}
	p, err := gatepath.Compile(gatepathtest.PublicPatterns)
	if err != nil {
		f.Fatal(err)
	}
	models := gatepathtest.Models()
	f.Fuzz(func(t *testing.T, target string) {
		u, ok := gatepathtest.Forwarded(target)
		if !ok || !p.Match(u.EscapedPath()) {
			return
		}
		sent := u.RequestURI() // what the upstream receives
		for _, m := range models {
			if route := m.Resolve(sent); !route.Public {
				t.Errorf("judged public: %q (forwarded as %q), but %s routes it to %s", target, sent, m.Name, route.Name)
			}
		}
	})
}
