// Package dashboard is statebusd's live web page, served under
// /dashboard/ on the monitoring endpoint: the machines on the bus with
// their traffic, backlog and state, a live tail of events, who talks to
// whom, and overload. It owns the page (embedded HTML, CSS and JavaScript,
// no build step), the Server-Sent Events stream that feeds it, and the
// aggregator behind the stream.
//
// The page never receives every event. While at least one page is open,
// one aggregator installs a server.Tap: it samples routed events (a period
// chosen each second so that it sees about SampleTarget a second, whatever
// the bus's rate), scales the samples into rates per sender and target,
// and reads every connection's counters once a second. Each open page gets
// one snapshot a second and, every TailInterval, at most TailBudget events
// its tail filter matched. A few seconds (linger) after the last page
// closes the tap is removed, and routing does nothing for the dashboard.
//
// The dashboard shows what /machines shows, so it obeys the same setting:
// without Options.Machines (MessageBus:HttpMachines) the page shows only
// the service's counters; no id, process, traffic or event. Payloads never
// leave the service through the dashboard.
package dashboard

import (
	"crypto/subtle"
	"embed"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/internal/server"
)

//go:embed assets
var assets embed.FS

// Limits on what pages can make the service hold.
const (
	// MaxStreams is how many pages may be open at once.
	MaxStreams = 8
	// MaxPatternBytes is the longest tail filter pattern.
	MaxPatternBytes = 256
	// TailInterval is how often a page receives its tail.
	TailInterval = 250 * time.Millisecond
	// TailBudget is how many events a page's tail receives per
	// TailInterval; matches beyond it are counted, not sent.
	TailBudget = 25
	// SampleTarget is about how many events a second the aggregator
	// samples for the traffic view.
	SampleTarget = 2000
	// maxPairs bounds the traffic pairs counted per second; the rest are
	// counted as one "other" pair.
	maxPairs = 1000
)

// Options configure the dashboard.
type Options struct {
	// Machines shows machine ids, processes, traffic and the event tail,
	// as /machines does. Without it the page shows counters only.
	Machines bool
	// Token, when set, must accompany every request: ?token=... (the page
	// then keeps it in a cookie) or "Authorization: Bearer ...".
	Token string
	// Interval is how often snapshots are taken (default 1s).
	Interval time.Duration
}

// Dashboard serves the page and its event stream for one server.
type Dashboard struct {
	srv   *server.Server
	opt   Options
	files http.Handler

	mu      sync.Mutex
	streams int
	agg     *aggregator // running while streams > 0
	snap    *snapshot   // the latest; its next is closed when replaced
	done    chan struct{}
	closed  bool
	wg      sync.WaitGroup // the aggregator's goroutine
}

// New returns the dashboard of srv.
func New(srv *server.Server, opt Options) *Dashboard {
	if opt.Interval <= 0 {
		opt.Interval = time.Second
	}
	sub, _ := fs.Sub(assets, "assets")
	return &Dashboard{srv: srv, opt: opt, files: http.FileServerFS(sub), done: make(chan struct{}),
		snap: &snapshot{next: make(chan struct{})}}
}

// Close ends every open stream and stops the aggregator. Call it before
// the HTTP server's Shutdown, which would otherwise wait for the streams.
func (d *Dashboard) Close() {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		close(d.done)
		if d.agg != nil {
			d.agg.stop()
			d.agg = nil
		}
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// ServeHTTP serves the page (under /dashboard/) and its stream
// (/dashboard/events).
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !d.allowedHost(r.Host) {
		http.Error(w, "the dashboard answers only to an IP address or localhost unless a token is set "+
			"(a web page elsewhere could otherwise read it through DNS rebinding): open it by address, or set DashboardToken", http.StatusMisdirectedRequest)
		return
	}
	if !d.authorized(w, r) {
		http.Error(w, "this dashboard needs its token: open /dashboard/?token=TOKEN (MessageBus:DashboardToken)", http.StatusUnauthorized)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	path := strings.TrimPrefix(r.URL.Path, "/dashboard")
	if path == "/events" {
		d.stream(w, r)
		return
	}
	if path == "" {
		http.Redirect(w, r, "/dashboard/", http.StatusMovedPermanently)
		return
	}
	r2 := *r
	u := *r.URL
	u.Path = path
	r2.URL = &u
	d.files.ServeHTTP(w, &r2)
}

// allowedHost refuses host names other than localhost without a token: a
// page served from elsewhere that rebinds its name to 127.0.0.1 must not
// read the dashboard.
func (d *Dashboard) allowedHost(hostport string) bool {
	if d.opt.Token != "" {
		return true
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	host = strings.Trim(host, "[]")
	return host == "" || strings.EqualFold(host, "localhost") || net.ParseIP(host) != nil
}

const cookieName = "statebus_dashboard"

func (d *Dashboard) authorized(w http.ResponseWriter, r *http.Request) bool {
	if d.opt.Token == "" {
		return true
	}
	ok := func(s string) bool { return subtle.ConstantTimeCompare([]byte(s), []byte(d.opt.Token)) == 1 }
	if t := r.URL.Query().Get("token"); t != "" && ok(t) {
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: t, Path: "/dashboard/", HttpOnly: true,
			SameSite: http.SameSiteStrictMode})
		return true
	}
	if c, err := r.Cookie(cookieName); err == nil && ok(c.Value) {
		return true
	}
	if a, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found && ok(a) {
		return true
	}
	return false
}

var errTooMany = errors.New("too many dashboards are open (" + strconv.Itoa(MaxStreams) + "): close one")

// open registers a stream, starting the aggregator for the first one.
func (d *Dashboard) open(tail *tailSink) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("the monitoring endpoint is shutting down")
	}
	if d.streams >= MaxStreams {
		return errTooMany
	}
	d.streams++
	if d.agg == nil {
		d.agg = newAggregator(d)
		d.wg.Add(1)
		go func(a *aggregator) {
			defer d.wg.Done()
			a.run()
		}(d.agg)
	}
	if tail != nil && d.opt.Machines {
		d.agg.tap.Tail.Add(&router.Watch[server.TailSink]{ID: tail.id, Owner: tail, Filter: tail.filter})
	}
	return nil
}

// linger is how long the aggregator outlives the last page: a page that
// applies a filter reconnects, and keeps its rates.
const linger = 3 * time.Second

// close unregisters a stream, stopping the aggregator linger after the
// last.
func (d *Dashboard) close(tail *tailSink) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.agg != nil && tail != nil {
		d.agg.tap.Tail.Remove(tail, tail.id)
	}
	d.streams--
	if d.streams == 0 && d.agg != nil {
		a := d.agg
		time.AfterFunc(linger, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.streams == 0 && d.agg == a {
				a.stop()
				d.agg = nil
			}
		})
	}
}

// publish makes s the latest snapshot and wakes the streams.
func (d *Dashboard) publish(s *snapshot) {
	s.next = make(chan struct{})
	d.mu.Lock()
	old := d.snap
	d.snap = s
	d.mu.Unlock()
	close(old.next)
}

func (d *Dashboard) latest() *snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snap
}
