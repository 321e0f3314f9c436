package raftnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

const fileRaftLog = "raft.db"

// raftLockTimeout bounds the wait for another process's lock on raft.db;
// raftCheckTimeout the read-only pass over the whole log.
const (
	raftLockTimeout  = 5 * time.Second
	raftCheckTimeout = 2 * time.Minute
)

// raftLogAdvice is what to do about a voter whose Raft log cannot be used.
func raftLogAdvice(dataDir string) string {
	return fmt.Sprintf("Nothing was changed. If the grid's other masters are up: stop this node, run `kontena node rm NAME` "+
		"against them, move %s away (mv %s %s.old) and join this machine again with a token from `kontena grid token`. "+
		"If this was the grid's only master, restore %s from a backup", dataDir, dataDir, dataDir, filepath.Join(dataDir, Dir))
}

// openRaftLog opens the Raft log and stable store of dataDir. A missing
// raft.db is created (a new voter); an empty, truncated, damaged or locked
// one is an error that says which file and what to do: bbolt panics or
// faults on some damage, and a voter must never start with a fresh, empty
// log in place of the one it lost (it would vote as if it had seen nothing).
func openRaftLog(dataDir string) (*raftboltdb.BoltStore, error) {
	path := filepath.Join(dataDir, Dir, fileRaftLog)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("raft log %s: %w", path, err)
	case fi.Size() == 0:
		return nil, fmt.Errorf("%w: raft log %s is empty (0 bytes): this master's Raft log is lost, and starting with an empty log "+
			"could let it vote away changes the grid committed. %s", ErrDataDir, path, raftLogAdvice(dataDir))
	default:
		if err := checkBoltHeader(path, fi.Size()); err != nil {
			return nil, damagedRaftLog(dataDir, path, err)
		}
	}
	var store *raftboltdb.BoltStore
	err = guarded(raftCheckTimeout, func() error {
		if fi != nil {
			// Read it all, read-only, before bolt writes to it: opening
			// for writing commits a transaction.
			ro, err := raftboltdb.New(raftboltdb.Options{Path: path,
				BoltOptions: &bbolt.Options{Timeout: raftLockTimeout, ReadOnly: true}})
			if err != nil {
				return err
			}
			err = readWholeLog(ro)
			_ = ro.Close()
			if err != nil {
				return err
			}
		}
		var err error
		store, err = raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: writeOptions()})
		return err
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: raft log %s is locked by another process: is another kontena running with --data-dir %s? Stop it first",
			ErrDataDir, path, dataDir)
	}
	if err != nil {
		return nil, damagedRaftLog(dataDir, path, err)
	}
	return store, nil
}

// writeOptions are bbolt's options for the log a voter writes. The free
// page list is not written with every commit (etcd runs its own bbolt so):
// once snapshots compact the log it spans many pages, each commit would
// rewrite them. bbolt rebuilds the list by scanning the file when it opens
// one, and reads files written either way.
func writeOptions() *bbolt.Options {
	return &bbolt.Options{Timeout: raftLockTimeout, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
}

func damagedRaftLog(dataDir, path string, err error) error {
	return fmt.Errorf("%w: raft log %s is damaged (%v). %s", ErrDataDir, path, err, raftLogAdvice(dataDir))
}

// readWholeLog reads every entry and the stable keys once, so damage shows
// here rather than as a panic inside Raft later.
func readWholeLog(s *raftboltdb.BoltStore) error {
	first, err := s.FirstIndex()
	if err != nil {
		return err
	}
	last, err := s.LastIndex()
	if err != nil {
		return err
	}
	if last < first {
		return fmt.Errorf("last log index %d is below the first %d", last, first)
	}
	if last > 0 {
		for i := first; i <= last; i++ {
			var l raft.Log
			if err := s.GetLog(i, &l); err != nil {
				return fmt.Errorf("log entry %d of %d..%d: %w", i, first, last, err)
			}
		}
	}
	for _, k := range []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand"} {
		if _, err := s.Get([]byte(k)); err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
			return fmt.Errorf("stable key %s: %w", k, err)
		}
	}
	return nil
}

// guarded runs fn on its own goroutine with memory faults turned into
// panics (bbolt reads the file through mmap: a page past a truncated end is
// a SIGBUS) and a panic into an error; it gives up after timeout.
func guarded(timeout time.Duration, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("reading it failed: %v", r)
			}
		}()
		done <- fn()
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("reading it took more than %s", timeout)
	}
}

// checkBoltHeader validates the two bbolt meta pages and that the file is as
// long as they say, without mapping the file.
func checkBoltHeader(path string, size int64) error {
	const (
		pageHeader = 16 // page id, flags, count, overflow
		metaSum    = 56 // meta bytes covered by its checksum
		boltMagic  = 0xED0CDAED
		noFreelist = ^uint64(0)
	)
	type meta struct {
		ok                       bool
		why                      string
		pageSize                 uint32
		root, freelist, pgid, tx uint64
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	read := func(off int64) meta {
		buf := make([]byte, pageHeader+64)
		if _, err := f.ReadAt(buf, off); err != nil {
			if errors.Is(err, io.EOF) {
				return meta{why: "the file ends inside its header"}
			}
			return meta{why: err.Error()}
		}
		b := buf[pageHeader:]
		le := binary.NativeEndian
		m := meta{pageSize: le.Uint32(b[8:]), root: le.Uint64(b[16:]), freelist: le.Uint64(b[32:]),
			pgid: le.Uint64(b[40:]), tx: le.Uint64(b[48:])}
		h := fnv.New64a()
		_, _ = h.Write(b[:metaSum])
		sum := le.Uint64(b[metaSum:])
		switch {
		case le.Uint32(b[0:]) != boltMagic:
			m.why = "not a bolt database: bad magic number"
		case le.Uint32(b[4:]) != 2:
			m.why = fmt.Sprintf("unknown bolt format version %d", le.Uint32(b[4:]))
		case sum != 0 && sum != h.Sum64():
			m.why = "header checksum mismatch"
		case m.pageSize < 512 || m.pageSize > 1<<20:
			m.why = fmt.Sprintf("bad page size %d", m.pageSize)
		default:
			m.ok = true
		}
		return m
	}
	if size < 4096 {
		return fmt.Errorf("truncated: %d bytes, shorter than its header", size)
	}
	m0 := read(0)
	pageSize := int64(os.Getpagesize())
	if m0.ok {
		pageSize = int64(m0.pageSize)
	}
	if size < 2*pageSize {
		return fmt.Errorf("truncated: %d bytes, shorter than its two header pages", size)
	}
	m1 := read(pageSize)
	m := m0
	if !m0.ok || (m1.ok && m1.tx > m0.tx) {
		m = m1
	}
	if !m.ok {
		return fmt.Errorf("both header pages are invalid: %s; %s", m0.why, m1.why)
	}
	if int64(m.pageSize) != pageSize {
		return fmt.Errorf("header pages disagree on the page size (%d, %d)", m0.pageSize, m1.pageSize)
	}
	if m.root >= m.pgid || (m.freelist != noFreelist && m.freelist >= m.pgid) {
		return fmt.Errorf("header points past the end of the data (root page %d, freelist page %d, %d pages)", m.root, m.freelist, m.pgid)
	}
	if need := int64(m.pgid) * pageSize; size < need {
		return fmt.Errorf("truncated: %d bytes, but its pages reach %d bytes", size, need)
	}
	// The pages the header points at must say they are those pages: bbolt
	// trusts their counts and would read far past them.
	checkPage := func(what string, id uint64, flags ...uint16) error {
		buf := make([]byte, pageHeader)
		if _, err := f.ReadAt(buf, int64(id)*pageSize); err != nil {
			return fmt.Errorf("%s page %d: %v", what, id, err)
		}
		le := binary.NativeEndian
		got, fl, overflow := le.Uint64(buf), le.Uint16(buf[8:]), le.Uint32(buf[12:])
		if got != id {
			return fmt.Errorf("%s page %d is garbage (it calls itself page %d)", what, id, got)
		}
		if id+uint64(overflow) >= m.pgid {
			return fmt.Errorf("%s page %d runs past the end of the data", what, id)
		}
		for _, want := range flags {
			if fl == want {
				return nil
			}
		}
		return fmt.Errorf("%s page %d has the wrong type (%#x)", what, id, fl)
	}
	if m.root != 0 { // 0: an inline root bucket
		if err := checkPage("root", m.root, 0x01, 0x02); err != nil { // branch, leaf
			return err
		}
	}
	if m.freelist != noFreelist {
		if err := checkPage("freelist", m.freelist, 0x10); err != nil {
			return err
		}
	}
	return nil
}

// privateTree makes dir and everything under it 0700 (directories) and 0600
// (files): Raft snapshots hold the grid's whole state. hashicorp/raft
// creates snapshot directories 0755 and files through the umask.
func privateTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o600)
		if d.IsDir() {
			mode = 0o700
		} else if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if perm := fi.Mode().Perm(); perm&^mode != 0 {
			return os.Chmod(p, perm&mode)
		}
		return nil
	})
}
