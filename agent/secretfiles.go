package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// SecretsPath is where a container finds its secrets of type file.
const SecretsPath = "/run/secrets"

// SecretFiles keeps the secret files of containers, one directory each.
type SecretFiles interface {
	// Write replaces the files of container name and returns the host
	// directory that holds them.
	Write(name string, files map[string]string) (dir string, err error)
	// Remove deletes the files of container name (none: no error).
	Remove(name string) error
}

// TmpfsSecrets keeps secret files under a directory on a tmpfs, so that a
// value is never written to the node's disk and is gone at reboot. Files
// are mode 0400, directories 0500, owned by the node's user (root).
type TmpfsSecrets struct {
	root string
}

// tmpfsMagic is the statfs type of a tmpfs (linux/magic.h).
const tmpfsMagic = 0x01021994

// NewTmpfsSecrets uses root, mounting a tmpfs there when it is not on one
// already (the node runs as root to drive the engine). It refuses a root it
// cannot put on a tmpfs rather than writing secrets to a disk.
func NewTmpfsSecrets(root string) (*TmpfsSecrets, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("secret files: %w", err)
	}
	if !onTmpfs(root) {
		if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=64m"); err != nil {
			return nil, fmt.Errorf("secret files: %s is not on a tmpfs and mounting one there failed: %w", root, err)
		}
		if !onTmpfs(root) {
			return nil, fmt.Errorf("secret files: %s is still not a tmpfs after mounting one", root)
		}
	}
	return &TmpfsSecrets{root: root}, nil
}

func onTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && int64(st.Type) == tmpfsMagic
}

// NewDirSecrets keeps secret files under root with no tmpfs check: for
// tests only, where root is a temporary directory.
func NewDirSecrets(root string) *TmpfsSecrets { return &TmpfsSecrets{root: root} }

// Write writes the files into a new directory and renames it over the old
// one, so a container never mounts a half-written set.
func (t *TmpfsSecrets) Write(name string, files map[string]string) (string, error) {
	dir, err := t.dir(name)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(t.root, 0o700); err != nil {
		return "", err
	}
	tmp := dir + ".new"
	if err := removeDir(tmp); err != nil {
		return "", err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", err
	}
	for file, value := range files {
		if file == "" || file == "." || file == ".." || strings.ContainsAny(file, `/\`) {
			_ = removeDir(tmp)
			return "", fmt.Errorf("secret file name %q is not one path element", file)
		}
		if err := os.WriteFile(filepath.Join(tmp, file), []byte(value), 0o400); err != nil {
			_ = removeDir(tmp)
			return "", err
		}
	}
	if err := os.Chmod(tmp, 0o500); err != nil {
		return "", err
	}
	if err := removeDir(dir); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// Remove deletes the files of container name.
func (t *TmpfsSecrets) Remove(name string) error {
	dir, err := t.dir(name)
	if err != nil {
		return err
	}
	return removeDir(dir)
}

// removeDir removes a secrets directory, which is read-only once written.
func removeDir(dir string) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(dir)
}

func (t *TmpfsSecrets) dir(name string) (string, error) {
	name = strings.TrimPrefix(name, "/")
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("container name %q is not one path element", name)
	}
	return filepath.Join(t.root, name), nil
}
