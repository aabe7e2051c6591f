package statebus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statebus/statebus/internal/lines"
	"github.com/statebus/statebus/internal/outq"
	"github.com/statebus/statebus/protocol"
)

// maxLine bounds a line read from the service. The service bounds what it
// accepts far below this; it only protects against a rogue peer.
const maxLine = 64 << 20

// session is one connection to the service. A Client outlives its
// sessions when it reconnects.
type session struct {
	c          *Client
	nc         net.Conn
	q          *outq.Queue[struct{}]
	readerDone chan struct{}
	writerDone chan struct{}
	endOnce    sync.Once
	writeErr   atomic.Pointer[error] // why the writer stopped, if it failed
	intern     map[string]string     // reader goroutine only
}

// connect dials the service and starts a session's loops.
func (c *Client) connect(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opt.dialTimeout)
	defer cancel()
	nc, err := dialPipe(ctx, c.path)
	if err != nil {
		return nil, &DialError{Path: c.path, Err: err}
	}
	s := &session{
		c:          c,
		nc:         nc,
		q:          outq.New[struct{}](c.opt.maxQueue),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
		intern:     make(map[string]string),
	}
	go s.writeLoop()
	go s.readLoop()
	return s, nil
}

// register registers and subscribes the client's id on s.
func (s *session) register(ctx context.Context) error {
	c := s.c
	ctx, cancel := context.WithTimeout(ctx, c.opt.dialTimeout)
	defer cancel()
	seq := c.seq.Add(1)
	_, err := c.call(ctx, s, seq, protocol.AppendRegister(nil, seq, c.id, c.opt.processName, os.Getpid(), time.Now()), false)
	if err == nil {
		seq = c.seq.Add(1)
		_, err = c.call(ctx, s, seq, protocol.AppendMachineRequest(nil, protocol.Subscribe, seq, c.id), false)
	}
	c.mu.Lock()
	groups := slices.Clone(c.groups)
	c.mu.Unlock()
	for _, g := range groups {
		if err == nil {
			err = s.groupCall(ctx, protocol.JoinGroup, g)
		}
	}
	if err == nil {
		err = c.rewatch(ctx, s)
	}
	return err
}

func (s *session) groupCall(ctx context.Context, t protocol.MessageType, group string) error {
	c := s.c
	seq := c.seq.Add(1)
	line := fmt.Appendf(nil, `{"Type":%d,"Id":%d,"Payload":{"Group":`, int(t), seq)
	line = protocol.AppendString(line, group)
	line = append(line, `,"MachineId":`...)
	line = protocol.AppendString(line, c.id)
	line = append(line, "}}\n"...)
	_, err := c.call(ctx, s, seq, line, false)
	return err
}

func (s *session) writeLoop() {
	err := s.q.Run(s.nc)
	if err != nil {
		// The reader ends the session: it may still have the line that
		// says why the service hung up ("Too many connections ..."). It
		// gets a second to read it.
		s.writeErr.Store(&err)
		s.nc.SetReadDeadline(time.Now().Add(time.Second))
	}
	close(s.writerDone)
}

func (s *session) readLoop() {
	defer close(s.readerDone)
	c := s.c
	lr := lines.NewReader(s.nc, maxLine, nil)
	var r protocol.Response
	var last string // the last error the service sent outside any call
	for {
		line, err := lr.Next()
		if err == lines.ErrTooLong {
			continue
		}
		if err != nil {
			if werr := s.writeErr.Load(); werr != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("writing: %v", *werr)
			}
			if last != "" {
				err = fmt.Errorf("%v; the service said: %s", err, last)
			}
			s.end(fmt.Errorf("%w: connection to %s lost: %v", ErrNotConnected, c.path, err), false)
			return
		}
		if protocol.DecodeResponse(line, &r) != nil {
			continue
		}
		if r.ID != nil {
			c.complete(&r)
			continue
		}
		if !r.Success {
			last = r.Error
			c.disp.enqueue(item{err: protocol.ParseError(r.Error)})
			continue
		}
		if !r.IsEvent {
			continue // an acknowledgement of a PostEvent
		}
		it := item{ev: s.makeEvent(&r.Event), replyTo: r.ReplyTo, watch: r.Watch}
		if r.Deadline != nil {
			it.deadline, _ = protocol.ParseTimeBytes(r.Deadline[1 : len(r.Deadline)-1])
		}
		c.disp.enqueue(it)
	}
}

func (s *session) makeEvent(ev *protocol.Event) Event {
	e := Event{
		Source: s.str(ev.Source),
		Target: s.str(ev.Target),
		Name:   s.str(ev.Name),
	}
	if ev.Payload != nil {
		e.Payload = bytes.Clone(ev.Payload)
	}
	if len(ev.Timestamp) > 2 && ev.Timestamp[0] == '"' {
		e.Timestamp, _ = protocol.ParseTimeBytes(ev.Timestamp[1 : len(ev.Timestamp)-1])
	}
	return e
}

// str returns b as a string, reusing an earlier copy: ids and event names
// repeat, so most events allocate nothing for them.
func (s *session) str(b []byte) string {
	if v, ok := s.intern[string(b)]; ok {
		return v
	}
	v := string(b)
	if len(s.intern) >= 4096 {
		clear(s.intern)
	}
	s.intern[v] = v
	return v
}

// end closes the session once. flush lets the writer write what is queued
// first (Close); otherwise the connection is already lost. Calls waiting on
// the session fail with cause. If the session was the client's, the client
// then reconnects or stops.
func (s *session) end(cause error, flush bool) {
	s.endOnce.Do(func() {
		c := s.c
		s.q.Close()
		if flush {
			s.nc.SetWriteDeadline(time.Now().Add(time.Second))
			<-s.writerDone
		}
		s.nc.Close()
		c.mu.Lock()
		public := c.sess.Load() == s
		if public {
			c.sess.Store(nil)
		}
		for seq, pc := range c.pending {
			pc.ch <- response{err: cause}
			delete(c.pending, seq)
		}
		lost := public && !c.closing && !flush
		reconnect := lost && c.opt.reconnect && c.id != ""
		if reconnect {
			c.wg.Add(1) // under c.mu: Close sets closing before it waits
		}
		c.mu.Unlock()
		switch {
		case reconnect:
			c.disp.enqueue(item{state: &StateChange{State: Disconnected, Err: cause}})
			go c.reconnectLoop()
		case lost:
			c.stop(cause)
		}
	})
}

// wait waits for the session's loops to finish.
func (s *session) wait() {
	<-s.readerDone
	<-s.writerDone
}

// reconnectLoop dials until a session registers again, with exponential
// backoff and full jitter, until the client is closed.
func (c *Client) reconnectLoop() {
	defer c.wg.Done()
	delay := c.opt.backoffMin
	for attempt := 1; ; attempt++ {
		select {
		case <-c.closed:
			return
		case <-time.After(time.Duration(rand.Int64N(int64(delay) + 1))):
		}
		delay = min(2*delay, c.opt.backoffMax)
		if c.establish(context.Background()) == nil {
			c.disp.enqueue(item{state: &StateChange{State: Reconnected, Attempt: attempt}})
			return
		}
	}
}

// establish connects, registers and makes the new session the client's.
// Close cancels it.
func (c *Client) establish(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	s, err := c.connect(ctx)
	if err != nil {
		return err
	}
	if c.id != "" {
		if err := s.register(ctx); err != nil {
			s.end(err, false)
			s.wait()
			return err
		}
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		s.end(ErrNotConnected, true)
		s.wait()
		return ErrNotConnected
	}
	c.sess.Store(s)
	close(c.ready)
	c.ready = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// complete hands a response to the call waiting for it.
func (c *Client) complete(r *protocol.Response) {
	var err error
	if !r.Success {
		err = protocol.ParseError(r.Error)
	}
	seq, perr := strconv.ParseUint(string(r.ID), 10, 64)
	c.mu.Lock()
	pc, ok := c.pending[seq]
	delete(c.pending, seq)
	c.mu.Unlock()
	switch {
	case ok && perr == nil:
		resp := response{err: err}
		if pc.data && r.Data != nil {
			resp.data = bytes.Clone(r.Data)
		}
		pc.ch <- resp
	case err != nil:
		c.disp.enqueue(item{err: err})
	}
}
