//go:build !unix

package durable

func freeBytes(string) (uint64, bool) { return 0, false }
