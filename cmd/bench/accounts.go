package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// accounts compares the account endpoints a front-end calls with a session
// against the gate, in the same process and run: users/info (issue 13's
// target: at least half the gate's requests/s) and the REST dialect's
// "who am I", POST <account_api>/account with the session cookie.
func (b *bench) accounts(ctx context.Context) (section, error) {
	site := url(b.ports.AuthEndpoint)
	info := site + "auth/users/info"
	rest := site + "api/user/account"
	headers := b.gateHeaders()
	// The REST dialect answers its own failures with 200: only the body
	// tells a session that passed from one that did not.
	if err := expectStatuses(ctx, expect{"gate", url(b.ports.Gate), headers, 200}); err != nil {
		return section{}, err
	}
	if err := b.expectAccountAnswers(ctx, info, rest); err != nil {
		return section{}, err
	}

	desc := b.loadDesc()
	gate := &variant{row{Name: "gate (authgate)", Load: desc, Note: "valid session cookie; beside the account endpoints"}, b.wrk(url(b.ports.Gate), headers)}
	infoV := &variant{row{Name: "GET users/info", Load: desc, Note: "session cookie; answers the account as JSON"}, b.wrk(info, headers)}
	restLoad := b.wrk(rest, headers)
	restLoad.Script = "wrk.method = \"POST\"\n" + restLoad.Script
	restV := &variant{row{Name: "POST <account_api>/account", Load: desc, Note: "session cookie, no credentials: the REST \"who am I\""}, restLoad}
	peers := []*variant{infoV, restV}
	logger.Print("warming up the gate and the account endpoints")
	if err := warmUp(ctx, b.dir, gate, infoV, restV); err != nil {
		return section{}, err
	}
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
	// Still the same user after minutes of load.
	if err := b.expectAccountAnswers(ctx, info, rest); err != nil {
		return section{}, err
	}
	return section{
		rows: []row{infoV.row, restV.row, gate.row},
		checks: []check{
			ratioCheck("users/info ÷ gate, req/s", roundRatio(infoV.row, gateBeside[0], rps), ">=", 0.5),
			ratioCheck("REST POST account (session) ÷ gate, req/s", roundRatio(restV.row, gateBeside[1], rps), ">=", 0.5),
		},
		notes: []string{
			"Account endpoints: `GET /auth/users/info` and `POST /api/user/account` (the REST dialect's \"who am I\": a session cookie and no Basic credentials) on a site of the same Caddy process as the gate, each paired in every round with the gate (a b b a, as above); the bench user's session cookie on every request. Both were checked before and after the load to answer the bench user with `success: true` (the REST dialect answers its refusals with status 200 too).",
		},
	}, nil
}

// expectAccountAnswers checks that users/info and the REST "who am I"
// answer the bench user for the bench session.
func (b *bench) expectAccountAnswers(ctx context.Context, info, rest string) error {
	for _, c := range []struct{ method, url string }{{http.MethodGet, info}, {http.MethodPost, rest}} {
		req, err := http.NewRequestWithContext(ctx, c.method, c.url, nil)
		if err != nil {
			return err
		}
		req.AddCookie(b.cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"success":true`) ||
			!strings.Contains(string(body), `"`+benchUser+`"`) {
			return fmt.Errorf("%s %s: status %d, %s", c.method, c.url, resp.StatusCode, body)
		}
	}
	return nil
}
