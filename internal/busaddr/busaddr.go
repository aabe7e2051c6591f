// Package busaddr owns the addresses of buses that nobody configured: the
// temporary bus the self-test, statebus bench --inproc, the examples and
// the tests serve on. On Unix that is a socket in a fresh private
// directory (short enough for sun_path); on Windows a named pipe with a
// random name (\\.\pipe\statebus-<random>), because a file path is not a
// pipe name there. It also dials such an address without the client
// library, for tests that speak the wire protocol themselves.
package busaddr
