package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// sourceIP is the original client address, trusting the forwarding header
// only from another grid node.
func sourceIP(r *http.Request) string {
	if peerNode(r) != "" {
		if ip := r.Header.Get(api.HeaderSourceIP); ip != "" {
			return ip
		}
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return host
}

func auditOf(r *http.Request, p *principal) *fsm.AuditInfo {
	return &fsm.AuditInfo{User: p.User, Roles: p.Roles, SourceIP: sourceIP(r), UserAgent: r.UserAgent(), Time: time.Now().UTC()}
}

// forward proxies a request to the first target that answers, with this
// node's certificate. The caller's token travels along unchanged.
func (n *Server) forward(w http.ResponseWriter, r *http.Request, targets []string) {
	hops, _ := strconv.Atoi(r.Header.Get(api.HeaderHops))
	if hops >= 3 {
		writeErr(w, api.Errorf(api.CodeUnavailable, "request forwarded too many times (leadership is changing); retry"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<20))
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInvalid, "read request: %v", err))
		return
	}
	// A forwarded request must never outlive a peer that vanished (a pooled
	// connection to a cut-off node would otherwise wait forever).
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout(r))
	defer cancel()
	var lastErr error
	for _, t := range targets {
		out, err := http.NewRequestWithContext(ctx, r.Method, api.BaseURL(t)+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			writeErr(w, err)
			return
		}
		out.Header = r.Header.Clone()
		out.Header.Set(api.HeaderHops, strconv.Itoa(hops+1))
		out.Header.Set(api.HeaderForwardedBy, n.id.ID)
		out.Header.Set(api.HeaderSourceIP, sourceIP(r))
		resp, err := n.peerHTTP.Do(out)
		if err != nil {
			lastErr = err
			continue
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		if resp.ContentLength >= 0 {
			// An answer of known length (every write's) needs no flushing,
			// and a pooled buffer instead of 32 KB of garbage per request.
			buf := copyBufs.Get().(*[]byte)
			_, _ = io.CopyBuffer(w, resp.Body, *buf)
			copyBufs.Put(buf)
			return
		}
		flushCopy(w, resp.Body)
		return
	}
	writeErr(w, api.Errorf(api.CodeUnavailable, "could not reach %s: %v", strings.Join(targets, ", "), lastErr))
}

// requestTimeout bounds one API request: a blocking query may wait as long
// as it asked (at most 5 minutes) plus a margin, anything else 30 s.
func requestTimeout(r *http.Request) time.Duration {
	if r.URL.Query().Get("follow") == "true" {
		return 24 * time.Hour // a log stream lasts as long as its reader
	}
	if r.URL.Query().Get("index") != "" {
		if d, err := time.ParseDuration(r.URL.Query().Get("wait")); err == nil {
			return min(d, 5*time.Minute) + 15*time.Second
		}
		return 45 * time.Second
	}
	return 30 * time.Second
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// flushCopy streams a body, flushing as data arrives (follow streams).
func flushCopy(w http.ResponseWriter, body io.Reader) {
	f, _ := w.(http.Flusher)
	pb := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(pb)
	buf := *pb
	for {
		k, err := body.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return
			}
			if f != nil {
				f.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, index uint64, v any) error {
	w.Header().Set("Content-Type", "application/json")
	if index > 0 {
		w.Header().Set(api.HeaderIndex, strconv.FormatUint(index, 10))
	}
	return json.NewEncoder(w).Encode(v)
}

// writeErr maps errors to API answers: FSM sentinel errors to their codes,
// anything unknown to 500 with its message.
func writeErr(w http.ResponseWriter, err error) {
	var ae *api.Error
	if !errors.As(err, &ae) {
		code := api.CodeInternal
		switch {
		case errors.Is(err, fsm.ErrNotFound):
			code = api.CodeNotFound
		case errors.Is(err, fsm.ErrConflict):
			code = api.CodeConflict
		case errors.Is(err, fsm.ErrInvalid):
			code = api.CodeInvalid
		}
		ae = api.Errorf(code, "%s", cleanErr(err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(api.StatusOf(ae.Code))
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: ae})
}

// cleanErr drops the trailing ": conflict" or ": invalid" that only serves
// errors.Is; ": not found" stays, it reads well ("node \"x\": not found").
func cleanErr(err error) string {
	s := err.Error()
	for _, sent := range []error{fsm.ErrConflict, fsm.ErrInvalid} {
		if errors.Is(err, sent) {
			s = strings.TrimSuffix(s, ": "+sent.Error())
		}
	}
	return s
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(api.CodeInvalid, "request body: %v", err)
	}
	return nil
}

// blockingWait implements blocking queries: ?index=N&wait=D waits until the
// state passes N (or D ends, at most 5 minutes).
func blockingWait(r *http.Request, store *fsm.Store) error {
	return waitQuery(r, func(ctx context.Context, idx uint64) error {
		_, err := store.Wait(ctx, idx)
		return err
	})
}

// waitQuery reads ?index and ?wait and runs wait with them; it returns an
// error for a bad query or a caller that went away.
func waitQuery(r *http.Request, wait func(ctx context.Context, idx uint64) error) error {
	idx, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	if idx == 0 {
		return nil
	}
	d := 30 * time.Second
	if s := r.URL.Query().Get("wait"); s != "" {
		w, err := time.ParseDuration(s)
		if err != nil {
			return api.Errorf(api.CodeInvalid, "wait=%q: %v", s, err)
		}
		d = min(w, 5*time.Minute)
	}
	// The wait may outlast the server's read and write timeouts (limits.go).
	if w := responseOf(r); w != nil {
		extendDeadline(w, d+blockingMargin)
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	if err := wait(ctx, idx); errors.Is(err, fsm.ErrInvalid) {
		return err
	}
	if r.Context().Err() != nil {
		return r.Context().Err()
	}
	return nil
}

// blockingAnswer serves a watched answer computed from the state (a node's
// network map, its assignments). It waits until one of tables changes past
// ?index=N (store.WaitTables); and while the computed answer is the one the
// caller holds (?hash=H, the X-Kontena-Hash of its last answer) it goes on
// waiting. A commit that changes the tables but not this answer (another
// node's label, a service of another node) then wakes the node's server
// only, not the watcher's network, decoding and reconciling (bench/grid.sh:
// their handlers alone took 5% of the leader's CPU). When the wait ends
// the unchanged answer is sent again, with the new index.
func blockingAnswer(w http.ResponseWriter, r *http.Request, store *fsm.Store, tables []string, answer func(*fsm.View) (any, error)) error {
	var (
		body []byte
		idx  uint64
		hash string
	)
	compute := func() error {
		v := store.Snapshot()
		a, err := answer(v)
		if err != nil {
			return err
		}
		if body, err = json.Marshal(a); err != nil {
			return err
		}
		idx, hash = v.Index(), contentHash(body)
		return nil
	}
	have := r.URL.Query().Get("hash")
	var answerErr error
	err := waitQuery(r, func(ctx context.Context, since uint64) error {
		for {
			if _, err := store.WaitTables(ctx, since, tables...); err != nil {
				if errors.Is(err, fsm.ErrInvalid) {
					return err // a table the store does not have: a bug of the caller
				}
				body = nil // the wait ended: answer the state as it is now
				return nil
			}
			if answerErr = compute(); answerErr != nil || have == "" || hash != have {
				return nil
			}
			since = idx
		}
	})
	if err != nil {
		return err
	}
	if answerErr != nil {
		return answerErr
	}
	if body == nil {
		if err := compute(); err != nil {
			return err
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(api.HeaderIndex, strconv.FormatUint(idx, 10))
	w.Header().Set(api.HeaderHash, hash)
	_, err = w.Write(append(body, '\n'))
	return err
}

// contentHash names an answer's content (not secret: only its reader,
// who holds the content, sees it).
func contentHash(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:12])
}
