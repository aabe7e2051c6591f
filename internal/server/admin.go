package server

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"time"

	"github.com/statebus/statebus/internal/version"
	"github.com/statebus/statebus/protocol"
)

// Status returns the health status with statebus's additions (uptime,
// peak connections), as the Health request reports it.
func (s *Server) Status() protocol.HealthStatus {
	h := s.Health()
	peakAt := s.peakAt.Load()
	st := protocol.HealthStatus{
		IsHealthy:          h.IsHealthy,
		ConnectionCount:    h.ConnectionCount,
		RegisteredMachines: h.RegisteredMachines,
		LastActivityAt:     h.LastActivityAt,
		StartedAt:          s.startedAt.UTC(),
		UptimeSeconds:      time.Since(s.startedAt).Seconds(),
		PeakConnections:    int(s.peak.Load()),
		MaxConnections:     s.cfg.MaxConnections,
		Version:            version.String(),
		ServiceUID:         os.Geteuid(),
		ServicePID:         os.Getpid(),
	}
	if peakAt != 0 {
		st.PeakConnectionsAt = time.Unix(0, peakAt).UTC()
	}
	return st
}

// notePeak records n connections if it is a new peak.
func (s *Server) notePeak(n int64) {
	for {
		p := s.peak.Load()
		if n <= p {
			return
		}
		if s.peak.CompareAndSwap(p, n) {
			s.peakAt.Store(time.Now().UnixNano())
			return
		}
	}
}

// MachineInfos returns the registry in its wire form.
func (s *Server) MachineInfos() []protocol.MachineInfo {
	snap := s.routes.Snapshot()
	out := make([]protocol.MachineInfo, len(snap))
	for i, m := range snap {
		out[i] = protocol.MachineInfo{
			MachineID: m.MachineID, ProcessName: m.ProcessName, ProcessID: m.ProcessID,
			PeerPID: m.PeerPID, PeerUID: m.PeerUID, PeerGID: m.PeerGID,
			PeerCert: m.PeerCert, PeerAddress: m.PeerAddr, PeerSID: m.PeerSID,
			RegisteredAt: m.RegisteredAt.UTC(), Subscribed: m.Subscribed,
			ConnectionID: m.Conn, ConnectedAt: m.ConnectedAt.UTC(), State: m.State,
		}
		if m.Subscribed {
			at := m.SubscribedAt.UTC()
			out[i].SubscribedAt = &at
		}
	}
	if s.fed != nil {
		out = s.withRemotes(out)
	}
	return out
}

// visible returns the registry entries c's user may see: a user with an
// access rule sees its own connection's ids and those it may send to;
// everyone else sees them all.
func (c *conn) visible(all []protocol.MachineInfo) []protocol.MachineInfo {
	if c.rule == nil {
		return all
	}
	return slices.DeleteFunc(all, func(m protocol.MachineInfo) bool {
		return m.ConnectionID != c.id && !c.rule.MaySee(m.MachineID)
	})
}

// admin answers the statebus extension requests.
func (c *conn) admin(r *protocol.Request) error {
	var v any
	switch r.Type {
	case protocol.Health:
		v = c.srv.Status()
	case protocol.Machines:
		v = c.visible(c.srv.MachineInfos())
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// encoding/json escapes U+2028 and U+2029 but not U+0085, which some
	// line readers (Python's splitlines) end a line at; a client-claimed
	// ProcessName may hold one. Raw, it can only be inside a string.
	c.reply(bytes.ReplaceAll(data, []byte("\u0085"), []byte(`\u0085`)), r.ID)
	return nil
}
