package busaddr

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"time"

	"github.com/Microsoft/go-winio"
)

// Noun is what an address names on this platform.
const Noun = "pipe"

// Temp returns a fresh address for a temporary bus and a function that
// removes what it left behind: here a named pipe with a random name,
// which goes away with the bus's last handle, so there is nothing to
// remove.
func Temp() (addr string, cleanup func(), err error) {
	return `\\.\pipe\statebus-` + rand.Text(), func() {}, nil
}

// Dial connects to the bus at addr without the client library.
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	return winio.DialPipeContext(ctx, addr)
}

// Gone reports whether nothing is left at addr once its bus stopped: no
// pipe of that name to connect to.
func Gone(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := winio.DialPipeContext(ctx, addr)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, os.ErrNotExist)
}
