// Command demo is a tiny upstream app to put behind authgate: its page greets
// the user named in the Remote-User header and shows the other identity
// headers; /api/whoami gives the same as JSON.
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/authgate/authgate/cmd/internal/demo"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:3000", "address to serve on")
	flag.Parse()
	log.Printf("demo: serving http://%s", *listen)
	log.Fatal(http.ListenAndServe(*listen, demo.Handler()))
}
