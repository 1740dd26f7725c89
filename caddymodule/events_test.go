package caddymodule

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// recorder is an events handler that keeps what it is given, for tests.
type recorder struct{}

var recorded = make(chan caddy.Event, 64)

func (recorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.authgate_test_recorder", New: func() caddy.Module { return new(recorder) }}
}

func (recorder) Handle(_ context.Context, e caddy.Event) error {
	recorded <- e
	return nil
}

func init() { caddy.RegisterModule(recorder{}) }

// Account events go out through Caddy's events app, without secrets.
func TestAuditEvents(t *testing.T) {
	e := newEnv(t, options{apps: map[string]any{"events": map[string]any{"subscriptions": []any{map[string]any{
		"events":   []string{"authgate.user_registered", "authgate.login_succeeded", "authgate.login_failed", "authgate.logout"},
		"handlers": []any{map[string]any{"handler": "authgate_test_recorder"}},
	}}}}})

	e.register("ella", "ella-password", "")
	e.do(nil, "POST", "/auth/users/login", map[string]any{"username": "ella", "password": "not-her-password"})
	ssid := e.login(e.client(), "ella", "ella-password").str("ssid")
	e.do(nil, "POST", "/auth/users/logout", nil, "Authorization", "Bearer "+ssid)

	var names []string
	for len(names) < 4 {
		select {
		case ev := <-recorded:
			names = append(names, ev.Name())
			data := fmt.Sprint(ev.Data)
			if ev.Data["username"] != "ella" || ev.Data["client_ip"] != "127.0.0.1" {
				t.Errorf("%s: data %s", ev.Name(), data)
			}
			for _, secret := range []string{"ella-password", "not-her-password", ssid[33:]} {
				if strings.Contains(data, secret) {
					t.Errorf("%s carries a secret: %s", ev.Name(), data)
				}
			}
		case <-time.After(testenv.Patience):
			t.Fatalf("events so far: %v", names)
		}
	}
	want := "authgate.user_registered authgate.login_failed authgate.login_succeeded authgate.logout"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
}
