package main

import (
	"flag"
	"strings"

	"github.com/statebus/statebus"
)

// remoteFlags are the flags that reach a statebusd on another host (or
// its plain TCP port): --url and the TLS files, each with its environment
// variable, which the client library reads too.
type remoteFlags struct {
	url, ca, cert, key string
}

// remoteFlagNames are the flags of remoteFlags, which may also come
// before the command.
var remoteFlagNames = []string{"url", "tls-ca", "tls-cert", "tls-key"}

// define adds the flags to fs, with their defaults from the environment.
func (r *remoteFlags) define(fs *flag.FlagSet, e *env) {
	fs.StringVar(&r.url, "url", e.getenv("STATEBUS_URL"),
		"`URL` of a statebusd elsewhere, instead of --pipe-name: tls://HOST:PORT (its TlsListen) or tcp://127.0.0.1:PORT (its PlainTcp) (env STATEBUS_URL)")
	fs.StringVar(&r.ca, "tls-ca", e.getenv("STATEBUS_TLS_CA"),
		"`FILE` of CA certificates (PEM) that sign the server's certificate, for tls://; default: the system's (env STATEBUS_TLS_CA)")
	fs.StringVar(&r.cert, "tls-cert", e.getenv("STATEBUS_TLS_CLIENT_CERT"),
		"`FILE` with your client certificate (PEM), for tls:// (env STATEBUS_TLS_CLIENT_CERT)")
	fs.StringVar(&r.key, "tls-key", e.getenv("STATEBUS_TLS_CLIENT_KEY"),
		"`FILE` with your client certificate's key (PEM), for tls:// (env STATEBUS_TLS_CLIENT_KEY)")
}

// options returns the client options for a URL, nil when none is set.
// They come after WithPipeName, which they override.
func (r *remoteFlags) options() []statebus.Option {
	if r.url == "" {
		return nil
	}
	return []statebus.Option{statebus.WithURL(r.url), statebus.WithTLSFiles(r.ca, r.cert, r.key)}
}

// tls reports whether the flags reach statebusd over TLS.
func (r *remoteFlags) tls() bool { return strings.HasPrefix(r.url, "tls://") }
