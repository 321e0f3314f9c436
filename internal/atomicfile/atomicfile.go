// Package atomicfile writes files so that a crash, a power cut or a full
// disk leaves either the old content or the new one, never a torn file:
// the node's identity, its caches and its Raft trust list all depend on it.
// It has no home in a role package because every node-side package writes
// such files.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Write writes data to path atomically with mode.
func Write(path string, data []byte, mode os.FileMode) error {
	return WriteFunc(path, data, mode, (*os.File).Write)
}

// WriteFunc is Write with the function that writes the bytes (tests make it
// fail as a full disk does): a temporary file in the same directory,
// fsynced, renamed over path, then the directory fsynced so the rename
// survives a power cut. On any failure the temporary file is removed and
// path keeps its old content.
func WriteFunc(path string, data []byte, mode os.FileMode, write func(*os.File, []byte) (int, error)) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return writeError(path, "create a temporary file", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return writeError(path, "chmod", err)
	}
	if _, err := write(f, data); err != nil {
		return writeError(path, "write", err)
	}
	if err := f.Sync(); err != nil {
		return writeError(path, "fsync", err)
	}
	if err := f.Close(); err != nil {
		return writeError(path, "close", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return writeError(path, "rename", err)
	}
	return SyncDir(dir)
}

func writeError(path, op string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("save %s: the disk is full (%s: %w); the previous %s is unchanged. Free space on the file system of %s and retry",
			path, op, err, filepath.Base(path), filepath.Dir(path))
	}
	return fmt.Errorf("save %s: %s: %w (the previous %s is unchanged)", path, op, err, filepath.Base(path))
}

// SyncDir makes renames and removals in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: the file system cannot sync directories
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
