//go:build linux

package park

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Parker waits for the sockets of parked connections in an epoll set of
// its own (each registered EPOLLIN|EPOLLRDHUP|EPOLLONESHOT). The set's
// descriptor itself waits in the runtime's poller, so the Parker's
// goroutine holds no thread while it waits.
type Parker struct {
	table
	ep   *os.File // the epoll set
	epfd int
	done chan struct{}
}

// New returns a Parker; its goroutine runs until Close.
func New() (*Parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	p := &Parker{ep: os.NewFile(uintptr(epfd), "park-epoll"), epfd: epfd, done: make(chan struct{})}
	rc, err := p.ep.SyscallConn()
	if err != nil {
		p.ep.Close()
		return nil, err
	}
	go p.run(rc)
	return p, nil
}

// run waits for parked sockets until Close and wakes each one that is
// ready.
func (p *Parker) run(rc syscall.RawConn) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	var ready []*Slot
	collect := func(uintptr) bool {
		for {
			n, err := unix.EpollWait(p.epfd, events, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				return len(ready) > 0 // nothing: wait in the runtime's poller
			}
			p.mu.Lock()
			for _, ev := range events[:n] {
				if s := p.keys[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; s != nil {
					ready = append(ready, s)
				}
			}
			p.mu.Unlock()
			if n < len(events) {
				return true
			}
		}
	}
	for {
		err := rc.Read(collect)
		for i, s := range ready {
			p.wake(s)
			ready[i] = nil
		}
		ready = ready[:0]
		if err != nil {
			return // Close
		}
	}
}

// Park parks the slot's reader, whose socket is rc: it reports true once
// the slot is parked, and the calling goroutine must then return without
// touching the reader's state, which the goroutine Resume runs owns from
// then on (it may already run). It reports false, and the caller goes on
// reading, when the slot was stopped, p is nil or the socket cannot be
// registered.
func (p *Parker) Park(s *Slot, rc syscall.RawConn) bool {
	if p == nil {
		return false
	}
	key := p.add(s)
	if !s.st.CompareAndSwap(running, parked) {
		p.forget(s) // stopped
		return false
	}
	p.n.Add(1)
	// Parked before the socket is armed: no event can come before it is
	// parked. From here Stop may resume it on another goroutine; the
	// socket stays open while Control runs.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))}
	var err error
	cerr := rc.Control(func(fd uintptr) {
		// A socket parked before stays in the set, disarmed by its
		// one-shot event: arm it again.
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		if errors.Is(err, unix.ENOENT) {
			err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if cerr == nil && err == nil {
		return true
	}
	if s.st.CompareAndSwap(parked, running) {
		p.forget(s)
		p.n.Add(-1)
		return false // not armed: read here
	}
	return true // Stop took it and resumed it
}

// Close stops p's goroutine and waits for it to return. Slots still
// parked are not resumed: Stop every connection first.
func (p *Parker) Close() {
	if p == nil {
		return
	}
	p.ep.Close()
	<-p.done
}
