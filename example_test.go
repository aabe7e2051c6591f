package statebus_test

import (
	"context"
	"fmt"
	"slices"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/busaddr"
	"github.com/statebus/statebus/internal/server"
)

// startBus runs a statebusd in-process for the examples and returns its
// socket path (a pipe name on Windows) and a function that stops it.
func startBus() (string, func()) {
	addr, cleanup, err := busaddr.Temp()
	if err != nil {
		panic(err)
	}
	cfg := server.DefaultConfig()
	cfg.SocketPath = addr
	cfg.HealthCheckInterval = 0
	srv, err := server.New(cfg)
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		panic(err)
	}
	return cfg.SocketPath, func() { srv.Shutdown(context.Background()); cleanup() }
}

func ExampleDial() {
	path, stop := startBus()
	defer stop()
	ctx := context.Background()

	b, _ := statebus.Dial(ctx, "machine-b", statebus.WithPipeName(path))
	defer b.Close()
	got := make(chan statebus.Event, 1)
	b.OnEvent("PING", func(e statebus.Event) { got <- e })

	a, err := statebus.Dial(ctx, "machine-a", statebus.WithPipeName(path))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	if err := a.SendEvent(ctx, "machine-b", "PING", map[string]any{"Message": "Hello"}); err != nil {
		fmt.Println(err)
		return
	}
	e := <-got
	fmt.Println(e.Source, e.Name, string(e.Payload))

	err = a.SendEvent(ctx, "machine-c", "PING", nil)
	fmt.Println(err)
	// Output:
	// machine-a PING {"Message":"Hello"}
	// Target machine not connected: machine-c
}

func ExampleClient_Request() {
	path, stop := startBus()
	defer stop()
	ctx := context.Background()

	calc, _ := statebus.Dial(ctx, "calc", statebus.WithPipeName(path))
	defer calc.Close()
	calc.HandleRequest("ADD", func(_ context.Context, e statebus.Event) (any, error) {
		var in struct{ A, B int }
		if err := e.Decode(&in); err != nil {
			return nil, err
		}
		return in.A + in.B, nil
	})

	c, _ := statebus.Dial(ctx, "caller", statebus.WithPipeName(path))
	defer c.Close()
	rep, err := c.Request(ctx, "calc", "ADD", map[string]int{"A": 2, "B": 3})
	fmt.Println(string(rep.Payload), err)
	_, err = c.Request(ctx, "nobody", "ADD", nil)
	fmt.Println(err)
	// Output:
	// 5 <nil>
	// No responder: nobody is not connected
}

func ExampleClient_JoinGroup() {
	path, stop := startBus()
	defer stop()
	ctx := context.Background()

	done := make(chan string, 4)
	for _, id := range []string{"worker-1", "worker-2"} {
		w, _ := statebus.Dial(ctx, id, statebus.WithPipeName(path))
		defer w.Close()
		w.OnEvent("JOB", func(e statebus.Event) { done <- w.ID() + " got " + string(e.Payload) })
		w.JoinGroup(ctx, "workers")
	}
	c, _ := statebus.Dial(ctx, "boss", statebus.WithPipeName(path))
	defer c.Close()
	for job := 1; job <= 2; job++ {
		c.SendEvent(ctx, "@workers", "JOB", job) // one member each, round-robin
	}
	got := []string{<-done, <-done}
	slices.Sort(got) // the two workers run side by side
	fmt.Println(got[0])
	fmt.Println(got[1])
	// Output:
	// worker-1 got 1
	// worker-2 got 2
}

func ExampleClient_Watch() {
	path, stop := startBus()
	defer stop()
	ctx := context.Background()

	sensor, _ := statebus.Dial(ctx, "sensor-1", statebus.WithPipeName(path))
	defer sensor.Close()
	ctrl, _ := statebus.Dial(ctx, "controller", statebus.WithPipeName(path))
	defer ctrl.Close()

	mon, _ := statebus.Dial(ctx, "monitor", statebus.WithPipeName(path))
	defer mon.Close()
	seen := make(chan statebus.Event, 1)
	stopWatch, err := mon.Watch(ctx, statebus.Filter{EventName: "ALARM_*"}, func(e statebus.Event) { seen <- e })
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stopWatch()

	sensor.SendEvent(ctx, "controller", "TICK", nil)
	sensor.SendEvent(ctx, "controller", "ALARM_FIRE", map[string]int{"T": 90})
	e := <-seen
	fmt.Println(e.Source, "->", e.Target, e.Name, string(e.Payload))
	// Output:
	// sensor-1 -> controller ALARM_FIRE {"T":90}
}

func ExampleWithPriority() {
	path, stop := startBus()
	defer stop()
	ctx := context.Background()

	b, _ := statebus.Dial(ctx, "b", statebus.WithPipeName(path))
	defer b.Close()
	got := make(chan string, 1)
	b.OnEvent("ALARM", func(e statebus.Event) { got <- e.Name })

	a, _ := statebus.Dial(ctx, "a", statebus.WithPipeName(path))
	defer a.Close()
	// Written before any Normal or Low events queued for b.
	err := a.SendEvent(ctx, "b", "ALARM", nil, statebus.WithPriority(statebus.High))
	fmt.Println(<-got, err)
	// Output:
	// ALARM <nil>
}

func ExampleClient_Drain() {
	path, stop := startBus()
	defer stop()
	ctx := context.Background()

	w, _ := statebus.Dial(ctx, "worker", statebus.WithPipeName(path))
	handled := 0
	w.OnEvent("JOB", func(statebus.Event) { handled++ })
	c, _ := statebus.Dial(ctx, "boss", statebus.WithPipeName(path))
	defer c.Close()
	c.SendEvent(ctx, "worker", "JOB", 1) // acknowledged: written to the worker

	// Drain runs the handlers for what arrived, gives the id back and closes.
	err := w.Drain(ctx)
	fmt.Println(handled, err, w.Status())
	fmt.Println(c.SendEvent(ctx, "worker", "JOB", 2))
	// Output:
	// 1 <nil> closed
	// Target machine not connected: worker
}
