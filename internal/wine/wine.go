// Package wine owns what tests do about running under Wine (the Windows
// test binaries run there in CI, packaging/wine/smoke.sh) rather than on
// a real Windows: telling the two apart, and working around what Wine 8
// does differently, so that a test skips or bends only for Wine itself
// and says why.
package wine

import (
	"context"
	"time"

	"github.com/statebus/statebus/internal/busaddr"
)

// SpendFirstInstance works around a Wine 8 gap in go-winio's pipe
// listener: a client that opens the listener's first pipe instance (the
// one winio.ListenPipe creates) connects, but Accept never returns it; a
// second client is accepted instead, and the first waits forever. Call
// it after listening on addr and before the first Accept: under Wine it
// opens that instance and hangs up at once, so Accept passes over it (its
// client is gone) and every real client meets a later instance. On a
// real Windows, and elsewhere, it does nothing.
//
// statebusd's server.Start does not need it: it looks the pipe name up
// with os.Lstat, which under Wine opens and closes the first instance
// the same way.
func SpendFirstInstance(addr string) error {
	if !Running() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := busaddr.Dial(ctx, addr)
	if err != nil {
		return err
	}
	return c.Close()
}
