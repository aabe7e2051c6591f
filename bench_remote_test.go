package statebus_test

import (
	"context"
	"testing"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/remote"
	"github.com/statebus/statebus/internal/server"
)

// BenchmarkTransport runs BenchmarkUnicast and BenchmarkRequest with both
// clients on the Unix socket, on plain loopback TCP and over mutual TLS on
// 127.0.0.1, against one statebusd serving all three.
func BenchmarkTransport(b *testing.B) {
	pki := bustest.NewPKI(b)
	srv := bustest.Start(b, func(c *server.Config) {
		c.TLS.Listen = "127.0.0.1:0"
		c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA = pki.ServerCert, pki.ServerKey, pki.CAFile
		if remote.PeerUIDSupported {
			c.PlainTCP = "127.0.0.1:0"
		}
	})
	cert, key := pki.Client(b, "bench", bustest.CertOptions{})
	transports := []struct {
		name string
		opts []statebus.Option
	}{
		{"unix", nil},
		{"tcp", []statebus.Option{statebus.WithURL("tcp://" + addrString(srv.PlainTCPAddr()))}},
		{"tls", []statebus.Option{statebus.WithURL("tls://" + srv.TLSAddr().String()), statebus.WithTLSFiles(pki.CAFile, cert, key)}},
	}
	for _, tr := range transports {
		if tr.name == "tcp" && !remote.PeerUIDSupported {
			continue
		}
		connect := func(b *testing.B, id string) *statebus.Client {
			c, err := statebus.Dial(context.Background(), id, append([]statebus.Option{statebus.WithPipeName(srv.Addr())}, tr.opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			return c
		}
		b.Run(tr.name+"/unicast", func(b *testing.B) {
			benchUnicast(b, connect(b, "sender-"+tr.name), connect(b, "receiver-"+tr.name))
		})
		b.Run(tr.name+"/request", func(b *testing.B) {
			benchRequest(b, connect(b, "caller-"+tr.name), connect(b, "svc-"+tr.name))
		})
	}
}

func addrString(a interface{ String() string }) string {
	if a == nil {
		return ""
	}
	return a.String()
}
