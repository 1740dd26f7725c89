package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRepoConfig reads the repository's own xcaddy.json.
func TestRepoConfig(t *testing.T) {
	b, err := readBuilder("../../xcaddy.json")
	if err != nil {
		t.Fatal(err)
	}
	if b.CaddyVersion == "" || len(b.Plugins) == 0 {
		t.Errorf("no Caddy version or plugin in %+v", b)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range b.Replacements {
		if r.Old == "github.com/authgate/authgate" && string(r.New) != root {
			t.Errorf("replacement %s => %s, want %s", r.Old, r.New, root)
		}
	}
}

func TestReplacementPaths(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "xcaddy.json")
	err := os.WriteFile(config, []byte(`{"replacements": [
		{"old": "a", "new": "./x"},
		{"old": "b", "new": "../y"},
		{"old": "c", "new": "example.com/c v1.2.3"},
		{"old": "d", "new": "/abs"}
	]}`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	b, err := readBuilder(config)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "x"), filepath.Join(filepath.Dir(dir), "y"), "example.com/c v1.2.3", "/abs"}
	for i, r := range b.Replacements {
		if string(r.New) != want[i] {
			t.Errorf("replacement %s => %s, want %s", r.Old, r.New, want[i])
		}
	}
}

func TestUnknownField(t *testing.T) {
	config := filepath.Join(t.TempDir(), "xcaddy.json")
	if err := os.WriteFile(config, []byte(`{"caddy_verison": "v2.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readBuilder(config); err == nil {
		t.Error("a misspelt field was accepted")
	}
}
