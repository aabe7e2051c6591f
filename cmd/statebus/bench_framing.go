package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/statebus/statebus"
)

// benchFramings are the framings --framing names, with the client option
// that selects each; a name whose option is nil is known but not in this
// build's client library.
var benchFramings = map[string]statebus.Option{
	"json":    statebus.WithFraming(statebus.FramingJSON),    // the .NET clients' JSON lines
	"compact": statebus.WithFraming(statebus.FramingCompact), // the library's default
}

// benchFramingJSON is the framing every client library has.
const benchFramingJSON = "json"

func benchFramingKnown(name string) bool {
	_, ok := benchFramings[name]
	return ok || name == ""
}

func benchFramingNames() string {
	var names []string
	for n := range benchFramings {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, " or ")
}

// benchFramingOption is the client option for --framing name ("" for the
// library's default: none).
func benchFramingOption(name string) (statebus.Option, error) {
	o := benchFramings[name]
	if o == nil && name != "" && name != benchFramingJSON {
		return nil, fmt.Errorf("--framing %s: this build's client library has no %s framing (statebus.WithFraming); rebuild statebus from a tree that has it, or give --framing %s", name, name, benchFramingJSON)
	}
	return o, nil
}
