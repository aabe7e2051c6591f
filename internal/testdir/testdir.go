// Package testdir owns the temporary directories of tests that also run
// under Wine. It imports nothing of statebus, so any package's tests can
// use it, including those internal/bustest depends on (internal/durable).
//
// At the end of a test Go removes t.TempDir with os.RemoveAll, which on
// Windows deletes through FileDispositionInformationEx; Wine 8 does not
// implement it and the test fails with "Invalid function" (seen with
// JetStream's store directories). os.Remove of each entry works there as
// on Windows and Unix.
package testdir

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// New is t.TempDir for tests that also run under Wine: it removes the
// directory with RemoveAll first, before t.TempDir's own cleanup.
func New(t testing.TB) string {
	dir := t.TempDir()
	t.Cleanup(func() { RemoveAll(dir) })
	return dir
}

// RemoveAll removes dir and what is inside it with os.Remove, deepest
// entries first, and returns the first error.
func RemoveAll(dir string) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			paths = append(paths, p)
		}
		return nil
	})
	for i := len(paths) - 1; i >= 0; i-- {
		if e := os.Remove(paths[i]); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// CopyDir copies the tree at src to dst, which must not exist: its
// directories, and its regular files with their modes (what cp -a does
// for a store's directory, without a cp).
func CopyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Mkdir(to, info.Mode().Perm())
		}
		if !info.Mode().IsRegular() {
			return &fs.PathError{Op: "copy", Path: p, Err: fs.ErrInvalid}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, info.Mode().Perm())
	})
}
