// Package access decides who may connect to the bus and what each peer may
// do on it: a local peer by the credentials the kernel reports for its
// connection (uid, gid, pid), a remote one by the names of the client
// certificate TLS verified (see CertIdentity). It is pure logic: the server
// asks, this package answers.
package access

import (
	"crypto/x509"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/statebus/statebus/protocol"
)

// Policy is the access configuration. The zero Policy lets only the
// service's own user, root and the socket's group connect, and lets them
// do everything.
type Policy struct {
	// AllowUIDs and AllowGIDs list who may connect besides the defaults. A
	// peer may connect when its uid is listed, or its primary or any
	// supplementary group is.
	AllowUIDs []int `json:"AllowUids"`
	AllowGIDs []int `json:"AllowGids"`
	// AllowAny lets every local user connect (the socket's file mode still
	// applies).
	AllowAny bool `json:"AllowAny"`
	// AllowCerts, when not empty, lists the only certificate names (see
	// Rule.Cert) that may connect over TLS; when empty, every client whose
	// certificate the service's client CA (TlsClientCa) verifies may.
	AllowCerts []string `json:"AllowCerts"`
	// Rules restrict what a user, or a certificate, may do once
	// connected; a peer without a rule is unrestricted.
	Rules []Rule `json:"Rules"`
	// Reserve gives machine ids to users: an id that matches a
	// reservation's patterns may be held only by that reservation's uid,
	// whoever connects first, so that after a crash no other user can
	// take the crashed machine's id (like D-Bus "own="). Ids no
	// reservation matches go to whichever allowed connection claims them
	// first.
	Reserve []Reservation `json:"Reserve"`
}

// Reservation reserves the machine ids matching IDs for one uid, or, when
// Cert is set, for the remote peers whose certificate has that name.
type Reservation struct {
	UID  int      `json:"Uid"`
	Cert string   `json:"Cert"`
	IDs  []string `json:"Ids"`
}

// Rule restricts one uid or, when Cert is set, the remote peers whose
// verified client certificate has the name Cert: "CN=name" (the subject's
// common name), or a subject alternative name "DNS:host", "URI:uri",
// "EMAIL:address" or "IP:address". Names are matched exactly. A rule names
// a uid or a certificate, not both. Patterns are shell globs (path.Match):
// "sensor-*" matches "sensor-1". An empty list means no restriction of
// that kind.
type Rule struct {
	UID  int    `json:"Uid"`
	Cert string `json:"Cert"`
	// Register lists the machine ids the user may register or subscribe.
	Register []string `json:"Register"`
	// SendTo lists the targets the user may send events to ("*" is
	// broadcast).
	SendTo []string `json:"SendTo"`
	// Watch lets the user install filters that copy other machines'
	// events to it; a user with a rule may not unless this is true.
	Watch bool `json:"Watch"`
	// Join lists the groups the user may join. When empty, the Register
	// patterns decide (a group name must match one of them); when both are
	// empty the user may join any group.
	Join []string `json:"Join"`
	// Durable lists the machine ids the user may declare durable (their
	// events are stored on disk: docs/durability.md). Empty: none.
	Durable []string `json:"Durable"`
}

// Peer is who is at the other end of a connection: a local process, known
// by the credentials the kernel reports (-1 where unknown), or a remote
// one, known by its verified client certificate.
type Peer struct {
	PID, UID, GID int
	// Cert is a remote peer's certificate identity; nil for a local peer.
	Cert *CertID
}

// Local returns the peer of a local connection.
func Local(pid, uid, gid int) Peer { return Peer{PID: pid, UID: uid, GID: gid} }

// Remote returns the peer of a TLS connection with a verified certificate.
func Remote(id *CertID) Peer { return Peer{PID: -1, UID: -1, GID: -1, Cert: id} }

// String names the peer in errors: "uid U" or the certificate's name.
func (p Peer) String() string {
	if p.Cert != nil {
		return p.Cert.Name
	}
	return "uid " + strconv.Itoa(p.UID)
}

// CertID is what the service knows of a remote peer: the names of its
// verified client certificate.
type CertID struct {
	// Name is the name the peer goes by in logs, errors and the registry:
	// "CN=" and the subject's common name, or, without one, its first
	// subject alternative name.
	Name string
	// Names are every name a rule or reservation may match: "CN=...",
	// then "DNS:...", "URI:...", "EMAIL:..." and "IP:..." for each subject
	// alternative name, at most maxNames of them.
	Names []string
}

// Has reports whether the certificate has name.
func (id *CertID) Has(name string) bool { return id != nil && slices.Contains(id.Names, name) }

// maxNames bounds the names kept of one certificate: the connection holds
// them for as long as it lives.
const maxNames = 32

// CertIdentity returns the names of a verified client certificate.
func CertIdentity(cert *x509.Certificate) *CertID {
	var names []string
	add := func(prefix, v string) {
		if v != "" && len(names) < maxNames && len(v) <= protocol.MaxIDBytes {
			names = append(names, prefix+v)
		}
	}
	add("CN=", cert.Subject.CommonName)
	for _, n := range cert.DNSNames {
		add("DNS:", n)
	}
	for _, u := range cert.URIs {
		add("URI:", u.String())
	}
	for _, e := range cert.EmailAddresses {
		add("EMAIL:", e)
	}
	for _, ip := range cert.IPAddresses {
		add("IP:", ip.String())
	}
	id := &CertID{Names: names, Name: "serial " + cert.SerialNumber.String()}
	if len(names) > 0 {
		id.Name = names[0]
	}
	return id
}

// certNamePrefixes are the kinds of certificate name a rule may use.
var certNamePrefixes = []string{"CN=", "DNS:", "URI:", "EMAIL:", "IP:"}

// checkCertName checks a certificate name in the policy.
func checkCertName(where, name string) error {
	for _, p := range certNamePrefixes {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return nil
		}
	}
	return fmt.Errorf("%s: certificate name %q must start with CN=, DNS:, URI:, EMAIL: or IP: and name something, e.g. \"CN=sensor-gateway\"", where, name)
}

// Checker applies a Policy for a service running as serviceUID with its
// socket owned by group socketGID.
type Checker struct {
	policy     Policy
	serviceUID int
	socketGID  int
	rules      map[int]*Rule
	certRules  []*Rule // in the policy's order: the first that names a certificate applies
}

// New checks the policy's patterns and names and returns its checker.
func New(p Policy, serviceUID, socketGID int) (*Checker, error) {
	c := &Checker{policy: p, serviceUID: serviceUID, socketGID: socketGID, rules: map[int]*Rule{}}
	for _, name := range p.AllowCerts {
		if err := checkCertName("access AllowCerts", name); err != nil {
			return nil, err
		}
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		for _, pat := range slices.Concat(r.Register, r.SendTo, r.Join, r.Durable) {
			if _, err := path.Match(pat, ""); err != nil {
				return nil, fmt.Errorf("access rule for %s: bad pattern %q", r.who(), pat)
			}
		}
		if r.Cert != "" {
			if r.UID != 0 {
				return nil, fmt.Errorf("access rule for %s: a rule names a Uid or a Cert, not both (Uid %d)", r.Cert, r.UID)
			}
			if err := checkCertName("access rule", r.Cert); err != nil {
				return nil, err
			}
			if slices.ContainsFunc(c.certRules, func(o *Rule) bool { return o.Cert == r.Cert }) {
				return nil, fmt.Errorf("access: two rules for %s", r.Cert)
			}
			c.certRules = append(c.certRules, r)
			continue
		}
		if _, dup := c.rules[r.UID]; dup {
			return nil, fmt.Errorf("access: two rules for uid %d", r.UID)
		}
		c.rules[r.UID] = r
	}
	for _, res := range p.Reserve {
		who := "uid " + strconv.Itoa(res.UID)
		if res.Cert != "" {
			who = res.Cert
			if res.UID != 0 {
				return nil, fmt.Errorf("access reservation for %s: a reservation names a Uid or a Cert, not both (Uid %d)", res.Cert, res.UID)
			}
			if err := checkCertName("access reservation", res.Cert); err != nil {
				return nil, err
			}
		}
		for _, pat := range res.IDs {
			if _, err := path.Match(pat, ""); err != nil {
				return nil, fmt.Errorf("access reservation for %s: bad pattern %q", who, pat)
			}
		}
	}
	return c, nil
}

// MayHold returns nil unless id is reserved for someone other than p: a
// reservation with a Cert for the peers whose certificate has that name,
// one without for its uid's local peers. When several reservations match,
// the id is the first one's.
func (c *Checker) MayHold(p Peer, id string) error {
	for _, res := range c.policy.Reserve {
		if !matchAny(res.IDs, id) || len(res.IDs) == 0 {
			continue
		}
		owner := "uid " + strconv.Itoa(res.UID)
		switch {
		case res.Cert != "":
			if p.Cert.Has(res.Cert) {
				return nil
			}
			owner = res.Cert
		case p.Cert == nil && res.UID == p.UID:
			return nil
		}
		return protocol.ErrAccessDenied.New("machine id " + id + " is reserved for " + owner)
	}
	return nil
}

// MayConnect returns nil if p may connect, else the error to send it. A
// local peer is known by its uid and gid (and pid, for its supplementary
// groups); a remote one by its certificate's names, when AllowCerts lists
// any.
func (c *Checker) MayConnect(p Peer) error {
	if p.Cert != nil {
		if len(c.policy.AllowCerts) == 0 || slices.ContainsFunc(p.Cert.Names, func(n string) bool {
			return slices.Contains(c.policy.AllowCerts, n)
		}) {
			return nil
		}
		return protocol.ErrAccessDenied.New("certificate " + p.Cert.Name + " is not allowed to connect (not in Access:AllowCerts)")
	}
	pid, uid, gid := p.PID, p.UID, p.GID
	if uid < 0 && c.serviceUID < 0 {
		// No user ids on this platform (Windows): the pipe's access list,
		// made from SocketMode, decides who connects.
		return nil
	}
	if c.policy.AllowAny || uid == 0 || uid == c.serviceUID || gid == c.socketGID ||
		contains(c.policy.AllowUIDs, uid) || contains(c.policy.AllowGIDs, gid) {
		return nil
	}
	for _, g := range groups(pid) {
		if g == c.socketGID || contains(c.policy.AllowGIDs, g) {
			return nil
		}
	}
	if uid < 0 {
		return protocol.ErrAccessDenied.New("the peer's credentials are unknown")
	}
	return protocol.ErrAccessDenied.New("uid " + strconv.Itoa(uid) + " is not allowed to connect")
}

// Rule returns the rule restricting p, or nil: a remote peer's is the
// first rule that names one of its certificate's names.
func (c *Checker) Rule(p Peer) *Rule {
	if p.Cert == nil {
		return c.rules[p.UID]
	}
	for _, r := range c.certRules {
		if p.Cert.Has(r.Cert) {
			return r
		}
	}
	return nil
}

// who names the rule's peer in errors.
func (r *Rule) who() string {
	if r.Cert != "" {
		return r.Cert
	}
	return "uid " + strconv.Itoa(r.UID)
}

// MayRegister returns nil if the rule allows registering id, else the
// error to send.
func (r *Rule) MayRegister(id string) error {
	if r == nil || matchAny(r.Register, id) {
		return nil
	}
	return protocol.ErrAccessDenied.New(r.who() + " may not register " + id)
}

// MayJoin returns nil if the rule allows joining group: its Join patterns,
// or its Register patterns when it has no Join patterns.
func (r *Rule) MayJoin(group string) error {
	if r == nil {
		return nil
	}
	patterns := r.Join
	if len(patterns) == 0 {
		patterns = r.Register
	}
	if matchAny(patterns, group) {
		return nil
	}
	return protocol.ErrAccessDenied.New(r.who() + " may not join group " + group)
}

// MayDeclareDurable returns nil if the rule lets its user declare id
// durable: unrestricted users may, restricted ones only for ids matching
// their Durable patterns (none when it has none), since a durable mailbox
// holds disk space after its connection ends.
func (r *Rule) MayDeclareDurable(id string) error {
	if r == nil || (len(r.Durable) > 0 && matchAny(r.Durable, id)) {
		return nil
	}
	return protocol.ErrAccessDenied.New("uid " + strconv.Itoa(r.UID) + " may not declare " + id + " durable")
}

// MaySee reports whether the rule lets its user see id in the registry:
// an id it may send to. Unrestricted users see every id.
func (r *Rule) MaySee(id string) bool {
	return r == nil || matchAny(r.SendTo, id)
}

// MayWatch returns nil if the rule allows watching others' events.
func (r *Rule) MayWatch() error {
	if r == nil || r.Watch {
		return nil
	}
	return protocol.ErrAccessDenied.New(r.who() + " may not watch events")
}

// MaySend returns nil if the rule allows sending to target, else the error
// to send.
func (r *Rule) MaySend(target string) error {
	if r == nil || matchAny(r.SendTo, target) {
		return nil
	}
	return protocol.ErrAccessDenied.New(r.who() + " may not send to " + target)
}

func matchAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// groups returns the supplementary groups of process pid from /proc (none
// when it cannot be read).
func groups(pid int) []int {
	if pid <= 0 {
		return nil
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			var gs []int
			for _, f := range strings.Fields(rest) {
				if g, err := strconv.Atoi(f); err == nil {
					gs = append(gs, g)
				}
			}
			return gs
		}
	}
	return nil
}
