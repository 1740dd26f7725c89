// Command caddy is Caddy with its standard modules and authgate, for tests
// and `go run ./cmd/caddy`. The release binary, bin/caddy, is built by
// xcaddy from xcaddy.json instead (make build).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/authgate/authgate/caddymodule"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}
