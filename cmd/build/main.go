// Command build builds Caddy with the authgate plugin, as xcaddy.json says,
// using xcaddy as a library:
//
//	go run ./cmd/build [-config xcaddy.json] [-o bin/caddy]
//
// Relative replacement paths in the config (".": this checkout) are taken
// relative to the config file's directory, not the working directory.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"

	"github.com/caddyserver/xcaddy"
)

func main() {
	config := flag.String("config", "xcaddy.json", "xcaddy Builder JSON")
	out := flag.String("o", "bin/caddy", "output binary")
	flag.Parse()

	// Our module is not published: it only ever comes from its replacement.
	// GOPRIVATE keeps the go commands from asking the module proxy and the
	// checksum database about it, and GOVCS from trying git instead: that
	// makes a lookup's answer "not found", which lets the replacement stand.
	addToEnv("GOPRIVATE", module)
	addToEnv("GOVCS", module+":off")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := build(ctx, *config, *out)
	stop()
	if err != nil {
		log.Fatalf("build: %v", err)
	}
}

const module = "github.com/authgate/authgate"

// addToEnv puts value first in the comma-separated list in the environment
// variable key, unless the list has it already.
func addToEnv(key, value string) {
	list := os.Getenv(key)
	if slices.Contains(strings.Split(list, ","), value) {
		return
	}
	if list != "" {
		value += "," + list
	}
	os.Setenv(key, value)
}

func build(ctx context.Context, config, out string) error {
	b, err := readBuilder(config)
	if err != nil {
		return err
	}
	return b.Build(ctx, out)
}

// readBuilder reads an xcaddy Builder from a JSON file, rejecting unknown
// fields so that a misspelt one is not silently ignored.
func readBuilder(path string) (xcaddy.Builder, error) {
	var b xcaddy.Builder
	f, err := os.Open(path)
	if err != nil {
		return b, err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("%s: %w", path, err)
	}

	root, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return b, err
	}
	for i, r := range b.Replacements {
		if isRelativePath(string(r.New)) {
			b.Replacements[i].New = xcaddy.ReplacementPath(filepath.Join(root, string(r.New)))
		}
	}
	return b, nil
}

// isRelativePath reports whether a go.mod replacement target is a relative
// directory; go.mod spells those with a leading ./ or ../ to tell them from
// module paths.
func isRelativePath(p string) bool {
	return p == "." || p == ".." || strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../")
}
