package server_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// dialFrom opens a TCP connection to addr from the loopback address
// local (any 127.x.y.z is this host), so that one test can be several
// peers.
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reports whether the server closes c (a read returns EOF
// or a reset) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		return true // EOF
	}
	ne, ok := err.(net.Error)
	return !ok || !ne.Timeout()
}

// TestTLSHandshakeFlood is the attack: peers open TCP connections to the
// TLS port and never finish (or drip) the handshake. Each address holds
// at most MaxHandshakesPerAddress slots and everyone MaxHandshakes; past
// them a connection is closed at once; a slot is given back after
// HandshakeTimeout; meanwhile a well-behaved TLS client from another
// address, and every Unix client, are served.
func TestTLSHandshakeFlood(t *testing.T) {
	pki := bustest.NewPKI(t)
	const perAddr, total = 4, 12
	timeout := 2 * time.Second
	srv := startTLS(t, pki, func(c *server.Config) {
		c.HandshakeTimeout = timeout
		c.TLS.MaxHandshakes, c.TLS.MaxHandshakesPerAddress = total, perAddr
	})
	addr := srv.TLSAddr().String()

	// One attacker address: 20 silent connections, and one that drips a
	// byte of a ClientHello every 100 ms, which must not extend its
	// deadline.
	start := time.Now()
	var silent []net.Conn
	for range 20 {
		silent = append(silent, dialFrom(t, "127.0.0.2", addr))
	}
	bustest.Eventually(t, 5*time.Second, func() bool { return srv.Stats().TLSHandshakesRefused >= 20-perAddr },
		"the connections past MaxHandshakesPerAddress were not refused: %+v", srv.Stats())
	if n := srv.Stats().TLSHandshakesInFlight; n != perAddr {
		t.Fatalf("%d handshakes in flight from one address, want %d", n, perAddr)
	}
	refused := 0
	for _, c := range silent {
		if closedWithin(c, 200*time.Millisecond) {
			refused++
		}
	}
	if refused != 20-perAddr {
		t.Fatalf("%d connections were closed at once, want the %d past the per-address limit", refused, 20-perAddr)
	}

	// Meanwhile a real client from 127.0.0.1, over TLS, and a Unix one.
	good := dialRawTLS(t, addr, pki.ClientTLS(t, "good", bustest.CertOptions{})).Connect("good")
	local := dialRaw(t, srv).Connect("local")
	good.Send(`{"Type":2,"Payload":{"SourceMachineId":"good","TargetMachineId":"local","EventName":"PING","Payload":null}}`)
	local.Expect(`{"Success":true,"Data":{"SourceMachineId":"good","TargetMachineId":"local","EventName":"PING","Payload":null},"Error":null}`)
	good.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"local"},"Error":null}`)

	// Many addresses: the total limit holds.
	var more []net.Conn
	for i := range 8 {
		for range perAddr {
			more = append(more, dialFrom(t, "127.0.1."+strconv.Itoa(i+1), addr))
		}
	}
	bustest.Eventually(t, 5*time.Second, func() bool {
		return srv.Stats().TLSHandshakesRefused >= uint64(20-perAddr+8*perAddr-(total-perAddr))
	}, "the connections past MaxHandshakes were not refused: %+v", srv.Stats())
	if n := srv.Stats().TLSHandshakesInFlight; n > total {
		t.Fatalf("%d handshakes in flight, over MaxHandshakes %d", n, total)
	}

	// The drip: after the flood, from a fresh address.
	drip := dialFrom(t, "127.0.0.3", addr)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		hello := bytes.Repeat([]byte{0x16}, 1000)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := drip.Write(hello[i : i+1]); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	// Every slot is given back within HandshakeTimeout of its accept.
	for _, c := range append(silent, more...) {
		if !closedWithin(c, timeout+3*time.Second) {
			t.Fatalf("a silent connection was still open %v after it connected", time.Since(start))
		}
	}
	if !closedWithin(drip, timeout+3*time.Second) {
		t.Fatal("a connection that drips its handshake was not closed at HandshakeTimeout")
	}
	bustest.Eventually(t, 5*time.Second, func() bool { return srv.Stats().TLSHandshakesInFlight == 0 },
		"handshake slots not given back: %+v", srv.Stats())
	if st := srv.Stats(); st.TLSHandshakesFailed < perAddr {
		t.Errorf("timed-out handshakes not counted: %+v", st)
	}
	// And the registered clients are untouched.
	local.Send(`{"Type":2,"Payload":{"SourceMachineId":"local","TargetMachineId":"good","EventName":"PONG","Payload":1}}`)
	good.Expect(`{"Success":true,"Data":{"SourceMachineId":"local","TargetMachineId":"good","EventName":"PONG","Payload":1},"Error":null}`)
}

// TestShutdownWithHandshakesInFlight: Shutdown does not wait out the
// handshake timeout of connections that never finish their handshake; it
// closes them, and those already served, at once.
func TestShutdownWithHandshakesInFlight(t *testing.T) {
	pki := bustest.NewPKI(t)
	cfg := server.DefaultConfig()
	cfg.SocketPath = bustest.SocketPath(t)
	cfg.HealthCheckInterval = 0
	cfg.HandshakeTimeout = time.Minute
	cfg.TLS = server.TLSConfig{Listen: "127.0.0.1:0", Cert: pki.ServerCert, Key: pki.ServerKey, ClientCA: pki.CAFile,
		MaxHandshakes: 8, MaxHandshakesPerAddress: 8}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	addr := srv.TLSAddr().String()
	silent := dialFrom(t, "127.0.0.1", addr)
	served := dialRawTLS(t, addr, pki.ClientTLS(t, "gw", bustest.CertOptions{})).Connect("served")
	bustest.Eventually(t, 5*time.Second, func() bool { return srv.Stats().TLSHandshakesInFlight == 1 }, "the silent connection is not in flight")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	if !closedWithin(silent, time.Second) || !closedWithin(served.C, time.Second) {
		t.Fatal("a connection outlived Shutdown")
	}
}
