// Package access decides who may connect to the bus and what each user may
// do on it, from the peer credentials the kernel reports for a connection.
// It is pure logic: the server asks, this package answers.
package access

import (
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
	// Rules restrict what a user may do once connected; a user without a
	// rule is unrestricted.
	Rules []Rule `json:"Rules"`
	// Reserve gives machine ids to users: an id that matches a
	// reservation's patterns may be held only by that reservation's uid,
	// whoever connects first, so that after a crash no other user can
	// take the crashed machine's id (like D-Bus "own="). Ids no
	// reservation matches go to whichever allowed connection claims them
	// first.
	Reserve []Reservation `json:"Reserve"`
}

// Reservation reserves the machine ids matching IDs for one uid.
type Reservation struct {
	UID int      `json:"Uid"`
	IDs []string `json:"Ids"`
}

// Rule restricts one uid. Patterns are shell globs (path.Match): "sensor-*"
// matches "sensor-1". An empty list means no restriction of that kind.
type Rule struct {
	UID int `json:"Uid"`
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
}

// Checker applies a Policy for a service running as serviceUID with its
// socket owned by group socketGID.
type Checker struct {
	policy     Policy
	serviceUID int
	socketGID  int
	rules      map[int]*Rule
}

// New checks the policy's patterns and returns its checker.
func New(p Policy, serviceUID, socketGID int) (*Checker, error) {
	c := &Checker{policy: p, serviceUID: serviceUID, socketGID: socketGID, rules: map[int]*Rule{}}
	for i := range p.Rules {
		r := &p.Rules[i]
		for _, pat := range slices.Concat(r.Register, r.SendTo, r.Join) {
			if _, err := path.Match(pat, ""); err != nil {
				return nil, fmt.Errorf("access rule for uid %d: bad pattern %q", r.UID, pat)
			}
		}
		if _, dup := c.rules[r.UID]; dup {
			return nil, fmt.Errorf("access: two rules for uid %d", r.UID)
		}
		c.rules[r.UID] = r
	}
	for _, res := range p.Reserve {
		for _, pat := range res.IDs {
			if _, err := path.Match(pat, ""); err != nil {
				return nil, fmt.Errorf("access reservation for uid %d: bad pattern %q", res.UID, pat)
			}
		}
	}
	return c, nil
}

// MayHold returns nil unless id is reserved for a user other than uid.
// When several reservations match, the id is the first one's.
func (c *Checker) MayHold(uid int, id string) error {
	for _, res := range c.policy.Reserve {
		if !matchAny(res.IDs, id) || len(res.IDs) == 0 {
			continue
		}
		if res.UID == uid {
			return nil
		}
		return protocol.ErrAccessDenied.New("machine id " + id + " is reserved for uid " + strconv.Itoa(res.UID))
	}
	return nil
}

// MayConnect returns nil if a peer with uid, gid (and pid, for its
// supplementary groups) may connect, else the error to send it.
func (c *Checker) MayConnect(pid, uid, gid int) error {
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

// Rule returns the rule restricting uid, or nil.
func (c *Checker) Rule(uid int) *Rule { return c.rules[uid] }

// MayRegister returns nil if the rule allows registering id, else the
// error to send.
func (r *Rule) MayRegister(id string) error {
	if r == nil || matchAny(r.Register, id) {
		return nil
	}
	return protocol.ErrAccessDenied.New("uid " + strconv.Itoa(r.UID) + " may not register " + id)
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
	return protocol.ErrAccessDenied.New("uid " + strconv.Itoa(r.UID) + " may not join group " + group)
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
	return protocol.ErrAccessDenied.New("uid " + strconv.Itoa(r.UID) + " may not watch events")
}

// MaySend returns nil if the rule allows sending to target, else the error
// to send.
func (r *Rule) MaySend(target string) error {
	if r == nil || matchAny(r.SendTo, target) {
		return nil
	}
	return protocol.ErrAccessDenied.New("uid " + strconv.Itoa(r.UID) + " may not send to " + target)
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
