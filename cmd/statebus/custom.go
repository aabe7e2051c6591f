package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/statebus/statebus"
)

// The custom scenario of "statebus test custom" and the menu: the seed's
// free-form mode, where the user types what to send.

// customWait bounds the custom mode's "wait" command.
const customWait = 10 * time.Second

type customJSON struct {
	Scenario string           `json:"scenario"`
	OK       bool             `json:"ok"`
	ID       string           `json:"id"`
	Sent     int              `json:"sent"`
	Failed   int              `json:"failed"`
	Received []statebus.Event `json:"received"`
	Errors   []string         `json:"errors"`
}

// inbox keeps the events the custom client received, so "wait NAME" can
// return one that arrived before the user asked for it.
type inbox struct {
	mu     sync.Mutex
	events []statebus.Event
	unseen map[string]int // per name, events no "wait" has taken yet
	wake   chan struct{}  // closed and replaced on every arrival
}

func (b *inbox) add(ev statebus.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, ev)
	b.unseen[ev.Name]++
	close(b.wake)
	b.wake = make(chan struct{})
}

// take waits until an event named name that no earlier take returned has
// arrived, or ctx ends.
func (b *inbox) take(ctx context.Context, name string) bool {
	for {
		b.mu.Lock()
		if b.unseen[name] > 0 {
			b.unseen[name]--
			b.mu.Unlock()
			return true
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return false
		}
	}
}

// scenarioCustom connects as id and reads commands from lr until "quit",
// end of input or ctx's end:
//
//	send <target> <event> [message]   message becomes {"Message": message}
//	wait <event>                      wait for an event not yet waited for
//	quit
//
// Received events are printed as they arrive. It passes if it connected
// and every command succeeded.
func scenarioCustom(ctx context.Context, o *out, f *flags, lr *lineReader, id string) (any, bool) {
	doc := customJSON{Scenario: "custom", ID: id, Received: []statebus.Event{}, Errors: []string{}}
	fail := func(err error) {
		o.check(false, "%s", errText(err))
		if h := hint(err, f); h != "" {
			o.printf("  %s\n", h)
		}
		doc.Errors = append(doc.Errors, errText(err))
	}
	onStatus := func(sc statebus.StatusChange) {
		switch {
		case sc.To == statebus.Reconnecting:
			o.check(false, "%s; reconnecting", errText(sc.Err))
		case sc.From == statebus.Reconnecting && sc.To == statebus.Connected:
			o.check(true, "reconnected as %s", id)
		}
	}
	c, err := statebus.Dial(ctx, id, append(f.bus(), statebus.WithStatusHandler(onStatus))...)
	if err != nil {
		fail(err)
		return doc, false
	}
	defer c.Close()
	box := &inbox{unseen: map[string]int{}, wake: make(chan struct{})}
	c.OnEvent("*", func(ev statebus.Event) {
		box.add(ev)
		payload := "null"
		if ev.Payload != nil {
			payload = string(ev.Payload)
		}
		o.printf("← %s from %s: %s\n", ev.Name, ev.Source, payload)
	})
	o.printf("Custom mode: connected as %s on %s.\n", id, f.socket())
	o.printf("Commands: send <target> <event> [message] | wait <event> | quit\n")

	for {
		o.printf("> ")
		line, ok := lr.next(ctx)
		if !ok || line == "quit" || line == "exit" {
			break
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
			continue
		case fields[0] == "send" && len(fields) >= 3:
			target, event := fields[1], fields[2]
			var payload any
			if len(fields) > 3 {
				payload = map[string]string{"Message": afterFields(line, 3)}
			}
			if err := checkTarget(target); err != nil {
				doc.Failed++
				fail(err)
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, customWait)
			ack, err := c.SendEventAck(sctx, target, event, payload)
			cancel()
			if err != nil {
				doc.Failed++
				fail(err)
				continue
			}
			if ack.Recipients != nil && *ack.Recipients == 0 {
				doc.Failed++
				fail(fmt.Errorf("%s %s", event, ackText(target, ack)))
				continue
			}
			doc.Sent++
			o.check(true, "%s %s", event, ackText(target, ack))
		case fields[0] == "wait" && len(fields) == 2:
			wctx, cancel := context.WithTimeout(ctx, customWait)
			got := box.take(wctx, fields[1])
			cancel()
			if got {
				o.check(true, "%s arrived", fields[1])
			} else {
				doc.Failed++
				fail(fmt.Errorf("no %s arrived within %v", fields[1], customWait))
			}
		default:
			doc.Failed++
			fail(fmt.Errorf("cannot read %q: use send <target> <event> [message], wait <event> or quit", line))
		}
	}
	o.printf("\n")
	c.Close()
	box.mu.Lock()
	doc.Received = append(doc.Received, box.events...)
	box.mu.Unlock()
	doc.OK = doc.Failed == 0
	return doc, doc.OK
}

// afterFields returns line without its first n fields: the rest as typed,
// inner spacing kept.
func afterFields(line string, n int) string {
	s := strings.TrimSpace(line)
	for range n {
		i := strings.IndexFunc(s, unicode.IsSpace)
		if i < 0 {
			return ""
		}
		s = strings.TrimLeftFunc(s[i:], unicode.IsSpace)
	}
	return s
}
