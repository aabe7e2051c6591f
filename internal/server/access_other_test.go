//go:build !linux

package server_test

// accessChild is the child of the peer-credential tests (access_test.go),
// which run only on Linux, where the kernel reports peer credentials.
func accessChild() {}
