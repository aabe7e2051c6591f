//go:build race

package main

// raceEnabled: the race detector multiplies memory and time; bounds that
// measure them are loosened under it.
const raceEnabled = true
