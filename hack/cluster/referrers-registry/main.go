// Command referrers-registry serves go-containerregistry's registry
// (pkg/registry) with the OCI 1.1 referrers API turned on: an independent
// registry implementation for Headwater's tests of attestations pushed as
// referrers. `crane registry serve` runs the same registry without that option.
//
//	referrers-registry -address 10.244.0.1:5002
package main

import (
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	address := flag.String("address", "127.0.0.1:0", "host:port to listen on")
	flag.Parse()
	server := &http.Server{
		Addr:              *address,
		Handler:           registry.New(registry.WithReferrersSupport(true)),
		ReadHeaderTimeout: 5 * time.Second,
	}
	log.Printf("serving the registry (referrers API on) at %s", *address)
	log.Fatal(server.ListenAndServe())
}
