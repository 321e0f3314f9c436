package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/internal/atomicfile"
	"github.com/kontena-ng/kontena/nodeagent"
)

// dataDirConfig is a one-node grid on 127.0.0.1 in dir, without containers.
func dataDirConfig(t *testing.T, dir string) Config {
	return Config{DataDir: dir, Name: "n1", Grid: "unit", InitialSize: 1, Subnet: "10.81.0.0/16", Supernet: "10.80.0.0/12",
		BindAddr: "127.0.0.1", APIPort: freePort(t), RaftPort: freePort(t), GossipPort: freePort(t), NoContainers: true,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// runUntilReady runs a node in dir until it is ready, then stops it.
func runUntilReady(t *testing.T, dir string) ReadyInfo {
	t.Helper()
	cfg := dataDirConfig(t, dir)
	ready := make(chan ReadyInfo, 1)
	cfg.OnReady = func(i ReadyInfo) { ready <- i }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node stopped with %v", err)
		}
	}()
	select {
	case info := <-ready:
		return info
	case err := <-done:
		done <- err
		t.Fatalf("node stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("node did not start")
	}
	return ReadyInfo{}
}

// runExpectingError starts a node in dir (with cfg changed by mutate) and
// returns the error it must stop with before it is ready.
func runExpectingError(t *testing.T, dir string, mutate func(*Config)) error {
	t.Helper()
	cfg := dataDirConfig(t, dir)
	ready := make(chan struct{}, 1)
	cfg.OnReady = func(ReadyInfo) { ready <- struct{}{} }
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("node started over a damaged data dir")
		}
		return err
	case <-ready:
		cancel()
		<-done
		t.Fatal("node became ready over a damaged data dir")
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Fatal("node neither started nor failed")
	}
	return nil
}

// snapshotDir maps every regular file under dir to its content.
func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func assertUnchanged(t *testing.T, dir string, before map[string][]byte) {
	t.Helper()
	after := snapshotDir(t, dir)
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("%s was deleted", name)
		case !bytes.Equal(a, b):
			t.Errorf("%s was changed (%d bytes before, %d after)", name, len(b), len(a))
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s was created", name)
		}
	}
}

func assertMessage(t *testing.T, err error, want ...string) {
	t.Helper()
	if !errors.Is(err, ErrDataDir) {
		t.Errorf("error does not wrap ErrDataDir: %v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

func TestDataDirLostIdentityWithRaftData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	runUntilReady(t, dir)
	if err := os.Rename(filepath.Join(dir, fileIdentity), filepath.Join(t.TempDir(), fileIdentity)); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dir)
	for _, join := range []bool{false, true} {
		err := runExpectingError(t, dir, func(c *Config) {
			if join { // --join must not go over it either
				c.Join, c.Token = []string{"127.0.0.1:1"}, "K1.unit."+strings.Repeat("0", 64)+".secret"
			}
		})
		t.Logf("join=%v: %v", join, err)
		assertMessage(t, err, dir, "holds Raft data (raft/raft.db", "but no node.json", "create a new grid over its Raft log",
			"Nothing was changed", "Restore node.json from a backup", "mv "+dir+" "+dir+".old")
		assertUnchanged(t, dir, before)
	}
}

func TestDataDirLostIdentityWithNodeFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{fileCAKey, fileMasterKey, "wireguard.key", nodeagent.FileAssignments} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("secret of "+f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshotDir(t, dir)
	err := runExpectingError(t, dir, nil)
	t.Log(err)
	assertMessage(t, err, "has no node.json but holds files of a node (assignments.sealed, ca-key.pem, master.key, wireguard.key)",
		"Nothing was changed", "Restore node.json from a backup into "+dir, "mv "+dir+" "+dir+".old")
	assertUnchanged(t, dir, before)
}

// A bootstrap that died before writing node.json left its marker: the next
// start bootstraps again. Files that are not a node's (a log) never block.
func TestDataDirUnfinishedBootstrapStartsOver(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kontena.log"), []byte("log"), 0o600); err != nil {
		t.Fatal(err)
	}
	first := runUntilReady(t, dir)
	if exists(filepath.Join(dir, fileSetupPending)) {
		t.Fatal("the setup marker outlived node.json")
	}
	if err := os.Remove(filepath.Join(dir, fileIdentity)); err != nil {
		t.Fatal(err)
	}
	if err := markSetupPending(dir); err != nil {
		t.Fatal(err)
	}
	second := runUntilReady(t, dir)
	if !second.Bootstrapped || second.CADigest == first.CADigest {
		t.Fatalf("expected a new bootstrap, got %+v", second)
	}
}

func TestDataDirEmptyRaftLog(t *testing.T) {
	dir := t.TempDir()
	runUntilReady(t, dir)
	if err := os.Truncate(filepath.Join(dir, dirRaft, "raft.db"), 0); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dir)
	err := runExpectingError(t, dir, nil)
	t.Log(err)
	assertMessage(t, err, "raft log "+filepath.Join(dir, "raft", "raft.db")+" is empty (0 bytes)", "Raft log is lost",
		"Nothing was changed", "kontena node rm", "restore "+filepath.Join(dir, "raft")+" from a backup")
	assertUnchanged(t, dir, before)
}

// A voter whose node.json says it wrote a Raft log, but whose raft.db is
// gone, refuses to start: a fresh empty log would vote as if it had seen
// nothing.
func TestDataDirMissingRaftLog(t *testing.T) {
	dir := t.TempDir()
	runUntilReady(t, dir)
	if err := os.Remove(filepath.Join(dir, dirRaft, "raft.db")); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, dir)
	err := runExpectingError(t, dir, nil)
	t.Log(err)
	assertMessage(t, err, "raft log "+filepath.Join(dir, "raft", "raft.db")+" is missing", "Nothing was changed", "kontena node rm")
	assertUnchanged(t, dir, before)
}

func TestDataDirCorruptRaftLog(t *testing.T) {
	random := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}
	cases := []struct {
		name   string
		damage func(db []byte) []byte
		want   string
	}{
		{"random bytes", func(db []byte) []byte { return random(len(db)) }, "both header pages are invalid: not a bolt database"},
		{"short", func(db []byte) []byte { return db[:1000] }, "truncated: 1000 bytes"},
		{"truncated", func(db []byte) []byte { return db[:3*4096] }, "truncated: 12288 bytes, but its pages reach"},
		{"garbage pages", func(db []byte) []byte {
			return append(append([]byte{}, db[:2*4096]...), random(len(db)-2*4096)...)
		}, "is damaged"},
		{"garbage log pages", func(db []byte) []byte {
			// Keep what the header check reads (meta, root and freelist
			// pages): the damage is deeper, in the log's own pages.
			le := binary.NativeEndian
			meta := func(p int) (root, freelist, txid uint64) {
				b := db[p*4096+16:]
				return le.Uint64(b[16:]), le.Uint64(b[32:]), le.Uint64(b[48:])
			}
			root, freelist, tx0 := meta(0)
			if r1, f1, tx1 := meta(1); tx1 > tx0 {
				root, freelist = r1, f1
			}
			out := append([]byte{}, db...)
			for p := 2; p*4096 < len(out); p++ {
				if uint64(p) != root && uint64(p) != freelist {
					copy(out[p*4096:(p+1)*4096], random(4096))
				}
			}
			return out
		}, "is damaged"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			runUntilReady(t, dir)
			path := filepath.Join(dir, dirRaft, "raft.db")
			db, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(db), 0o600); err != nil {
				t.Fatal(err)
			}
			before := snapshotDir(t, dir)
			err = runExpectingError(t, dir, nil)
			t.Log(err)
			assertMessage(t, err, "raft log "+path+" is damaged", tc.want, "Nothing was changed", "kontena node rm")
			assertUnchanged(t, dir, before)
		})
	}
}

func TestDataDirDiskFull(t *testing.T) {
	dir := t.TempDir()
	runUntilReady(t, dir)
	id, err := loadIdentity(dir)
	if err != nil || id == nil {
		t.Fatalf("load identity: %v", err)
	}
	before := snapshotDir(t, dir)
	fullDisk := func(path string, data []byte, mode os.FileMode) error {
		return atomicfile.WriteFunc(path, data, mode, func(f *os.File, b []byte) (int, error) {
			n, _ := f.Write(b[:len(b)/2])
			return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		})
	}
	id.Name = "renamed"
	err = id.saveWith(dir, fullDisk)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "the disk is full") || !strings.Contains(err.Error(), "is unchanged") ||
		!strings.Contains(err.Error(), "Free space on the file system of "+dir) {
		t.Errorf("identity save on a full disk: %v", err)
	}
	err = savePeersWith(dir, []string{"127.0.0.9:1"}, fullDisk)
	if err == nil || !strings.Contains(err.Error(), "save "+filepath.Join(dir, filePeers)+": the disk is full") {
		t.Errorf("peers save on a full disk: %v", err)
	}
	assertUnchanged(t, dir, before) // no temporary file is left either
}

func TestDataDirPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	runUntilReady(t, dir)
	runUntilReady(t, dir) // a restart narrows what the first run's Raft made
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v: others can read it", p, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(dir, dirRaft, "snapshots")) {
		t.Error("no snapshot dir")
	}
}
