package federation

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// connect starts the embedded node or dials the external cluster.
func (n *Node) connect(ctx context.Context) error {
	opts := []nats.Option{
		nats.Name("statebusd " + n.cfg.Node),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(8 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			n.log.Warn("federation: disconnected from NATS", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			n.log.Info("federation: reconnected to NATS", "url", c.ConnectedUrl())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			n.log.Warn("federation: NATS error", "err", err)
		}),
	}
	urls := ""
	if n.cfg.Mode == Embedded {
		ns, err := n.startEmbedded()
		if err != nil {
			return err
		}
		n.ns = ns
		opts = append(opts, nats.InProcessServer(ns))
	} else {
		for i, u := range n.cfg.URLs {
			if i > 0 {
				urls += ","
			}
			urls += u
		}
		if n.cfg.Credentials != "" {
			opts = append(opts, nats.UserCredentials(n.cfg.Credentials))
		}
		if n.cfg.TLSCA != "" {
			opts = append(opts, nats.RootCAs(n.cfg.TLSCA))
		}
		if n.cfg.TLSCert != "" || n.cfg.TLSKey != "" {
			opts = append(opts, nats.ClientCert(n.cfg.TLSCert, n.cfg.TLSKey))
		}
		opts = append(opts, nats.RetryOnFailedConnect(false))
	}
	var err error
	for {
		n.nc, err = nats.Connect(urls, opts...)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("federation: cannot connect to NATS %s: %w; check ClusterUrls, credentials and TLS files", urls, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func hostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return h, port, err
}

// startEmbedded runs this daemon's nats-server node: JetStream on, a
// client port (loopback unless configured; routes do not start without a
// listener, nats-server issue 5174) and the route listener the cluster's
// other nodes connect to.
func (n *Node) startEmbedded() (*natsserver.Server, error) {
	listen := n.cfg.ClientListen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ch, cp, err := hostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("ClusterClientListen %q: want host:port (%v)", listen, err)
	}
	rh, rp, err := hostPort(n.cfg.RouteListen)
	if err != nil {
		return nil, fmt.Errorf("ClusterRouteListen %q: want host:port (%v)", n.cfg.RouteListen, err)
	}
	if cp == 0 {
		cp = natsserver.RANDOM_PORT
	}
	if rp == 0 {
		rp = natsserver.RANDOM_PORT
	}
	opts := &natsserver.Options{
		ServerName: n.cfg.Node,
		Host:       ch,
		Port:       cp,
		JetStream:  true,
		StoreDir:   n.cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		Cluster:    natsserver.ClusterOpts{Name: n.cfg.Name, Host: rh, Port: rp},
		SyncAlways: n.cfg.SyncAlways,
		// Durable mailboxes write a mailbox's round as one message (up
		// to 4 MiB of events); NATS warns only above 8 MiB.
		MaxPayload: 8 << 20,
	}
	if !n.cfg.SyncAlways && n.cfg.SyncInterval > 0 {
		opts.SyncInterval = n.cfg.SyncInterval
	}
	for _, r := range n.cfg.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("ClusterRoutes: %q is not a route URL such as nats-route://host:6222", r)
		}
		opts.Routes = append(opts.Routes, u)
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("federation: embedded NATS node: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("federation: embedded NATS node did not start within 30s (client %s, routes %s); is the port taken?", listen, n.cfg.RouteListen)
	}
	return ns, nil
}

// RouteURL returns the embedded node's route URL (tests use it to build
// a cluster on free ports).
func (n *Node) RouteURL() string {
	if n.ns == nil {
		return ""
	}
	a := n.ns.ClusterAddr()
	if a == nil {
		return ""
	}
	return "nats-route://" + a.String()
}
