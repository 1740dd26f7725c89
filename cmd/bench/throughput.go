package main

import (
	"context"
	"fmt"
	"time"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// throughput compares the gate with plain reverse_proxy, forward_auth and
// caddy-security. Each comparison is a round of runs back to back
// (runPair), so that the machine's drift between one round and the next
// cancels out of the round's ratio.
func (b *bench) throughput(ctx context.Context) (section, error) {
	secAdmin, secPort, err := twoPorts()
	if err != nil {
		return section{}, err
	}
	logger.Print("starting caddy-security's Caddy")
	if _, err := b.start(ctx, "caddy-security", b.o.security, securityCaddyfile(secAdmin, secPort, b.ports.Upstream, securityKey), secPort); err != nil {
		return section{}, err
	}
	gateHeaders := b.gateHeaders()
	secHeaders := map[string]string{"Cookie": "access_token=" + securityToken(securityKey, time.Now(), 2*time.Hour)}
	p := b.ports
	if err := expectStatuses(ctx,
		expect{"plain", url(p.Plain), gateHeaders, 200},
		expect{"gate", url(p.Gate), gateHeaders, 200},
		expect{"gate without a session", url(p.Gate), nil, 0},
		expect{"forward_auth", url(p.ForwardAuth), gateHeaders, 200},
		expect{"forward_auth without a session", url(p.ForwardAuth), nil, 0},
		expect{"caddy-security", url(secPort), secHeaders, 200},
		expect{"caddy-security without a token", url(secPort), nil, 0},
	); err != nil {
		return section{}, err
	}

	desc := b.loadDesc()
	gate := &variant{row{Name: "gate (authgate)", Load: desc, Note: "valid session cookie"}, b.wrk(url(p.Gate), gateHeaders)}
	plain := &variant{row{Name: "plain reverse_proxy", Load: desc}, b.wrk(url(p.Plain), gateHeaders)}
	fwd := &variant{row{Name: "forward_auth → users/info", Load: desc, Note: "one extra HTTP hop"}, b.wrk(url(p.ForwardAuth), gateHeaders)}
	sec := &variant{row{Name: "caddy-security", Load: desc, Note: "JWT cookie, HS512"}, b.wrk(url(secPort), secHeaders)}
	peers := []*variant{plain, fwd, sec}
	logger.Print("warming up the four variants")
	if err := warmUp(ctx, b.dir, gate, plain, fwd, sec); err != nil {
		return section{}, err
	}
	// gateBeside[i] holds the gate's runs paired with peers[i], in order.
	gateBeside := make([]row, len(peers))
	for r := range b.o.rounds {
		for k := range peers {
			i := (r + k) % len(peers)
			g, err := runPair(ctx, b.dir, fmt.Sprintf("round %d/%d", r+1, b.o.rounds), (r+k)%2 == 0, gate, peers[i])
			if err != nil {
				return section{}, err
			}
			gateBeside[i].Rounds = append(gateBeside[i].Rounds, g)
		}
	}
	return section{
		rows: []row{plain.row, gate.row, fwd.row, sec.row},
		checks: []check{
			ratioCheck("gate ÷ plain reverse_proxy, req/s", roundRatio(gateBeside[0], plain.row, rps), ">=", 0.90),
			ratioCheck("gate ÷ caddy-security, req/s", roundRatio(gateBeside[2], sec.row, rps), ">=", 1.0),
			ratioCheck("gate ÷ forward_auth, req/s", roundRatio(gateBeside[1], fwd.row, rps), ">=", 2.0),
		},
		notes: []string{
			"plain and gate are two sites of the same Caddy process (bin/caddy); gate requests carry the session cookie of a user registered and logged in through `POST /auth/users/register` and `/auth/users/login`.",
			"forward_auth: Caddy's `forward_auth` to `/auth/users/info` on another site of the same process (the Authelia model: one more HTTP request per request; users/info answers from the session, as the gate does).",
			"caddy-security: `authorize with` a policy holding the shared HS512 key; each request carries a pre-made JWT cookie (`access_token`) that caddy-security verifies (it caches only tokens its own portal issued); `Remote-User`/`Remote-Email` injected, like the gate's headers.",
		},
	}, nil
}

// warmUp runs each variant's load for 2 s, unmeasured.
func warmUp(ctx context.Context, dir string, vs ...*variant) error {
	for _, v := range vs {
		w := v.load
		w.Duration = 2 * time.Second
		if _, err := w.Run(ctx, dir); err != nil {
			return err
		}
	}
	return nil
}

// twoPorts returns two free loopback ports: a Caddy's admin and site.
func twoPorts() (admin, site int, err error) {
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return 0, 0, err
	}
	return ports[0], ports[1], nil
}
