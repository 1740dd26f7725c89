package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/caddyserver/xcaddy"
)

// The peer: caddy-security at a pinned version, built against the same
// Caddy version as bin/caddy so that the comparison is plugin against plugin.
const (
	securityModule  = "github.com/greenpau/caddy-security"
	securityVersion = "v1.1.64"
)

// buildSecurity builds Caddy with caddy-security, once: the binary depends
// only on pinned versions, so an existing one is reused. Nothing of
// caddy-security enters this module; xcaddy fetches it into a temporary
// build module from the module proxy.
func buildSecurity(ctx context.Context, out, config string) error {
	caddyVersion, err := caddyVersionOf(config)
	if err != nil {
		return err
	}
	// A stamp file beside the binary says what it was built from, so a
	// change of either version rebuilds it.
	stamp := out + ".version"
	want := caddyVersion + " " + securityModule + "@" + securityVersion
	if have, err := os.ReadFile(stamp); err == nil && string(have) == want {
		if _, err := os.Stat(out); err == nil {
			logger.Printf("reusing %s (%s)", out, want)
			return nil
		}
	}
	logger.Printf("building %s (%s), about 1-2 minutes the first time", out, want)
	b := xcaddy.Builder{
		CaddyVersion: caddyVersion,
		Plugins:      []xcaddy.Dependency{{PackagePath: securityModule, Version: securityVersion}},
		TimeoutGet:   5 * time.Minute,
		TimeoutBuild: 5 * time.Minute,
	}
	if err := b.Build(ctx, out); err != nil {
		return fmt.Errorf("building %s: %w", out, err)
	}
	return os.WriteFile(stamp, []byte(want), 0o644)
}

// caddyVersionOf reads the Caddy version pinned in xcaddy.json, the single
// place that pins it.
func caddyVersionOf(config string) (string, error) {
	data, err := os.ReadFile(config)
	if err != nil {
		return "", err
	}
	var b xcaddy.Builder
	if err := json.Unmarshal(data, &b); err != nil {
		return "", fmt.Errorf("%s: %w", config, err)
	}
	if b.CaddyVersion == "" {
		return "", fmt.Errorf("%s: no caddy_version", config)
	}
	return b.CaddyVersion, nil
}
