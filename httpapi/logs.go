package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kontena-ng/kontena/agent/engine"
	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// logQuery is what `service logs` asks for.
type logQuery struct {
	tail   int
	follow bool
	since  string
}

func parseLogQuery(r *http.Request) (logQuery, error) {
	q := logQuery{tail: 100, follow: r.URL.Query().Get("follow") == "true", since: r.URL.Query().Get("since")}
	if s := r.URL.Query().Get("tail"); s != "" {
		k, err := strconv.Atoi(s)
		if err != nil || k < 0 {
			return q, api.Errorf(api.CodeInvalid, "tail=%q: expected a number, 0 or more", s)
		}
		q.tail = k
	}
	if q.since != "" {
		if _, err := time.ParseDuration(q.since); err != nil {
			if _, err := time.Parse(time.RFC3339, q.since); err != nil {
				return q, api.Errorf(api.CodeInvalid, "since=%q: expected a duration (10m) or an RFC 3339 time", q.since)
			}
		}
	}
	return q, nil
}

func (q logQuery) values() url.Values {
	v := url.Values{"tail": {strconv.Itoa(q.tail)}}
	if q.follow {
		v.Set("follow", "true")
	}
	if q.since != "" {
		v.Set("since", q.since)
	}
	return v
}

// serviceLogs merges the logs of every instance of a service, each line
// prefixed with its timestamp and instance name. Without follow the lines
// are sorted by time; with follow they stream as they come.
func (n *Server) serviceLogs(w http.ResponseWriter, r *http.Request, p *principal) error {
	q, err := parseLogQuery(r)
	if err != nil {
		return err
	}
	store, err := n.store()
	if err != nil {
		return err
	}
	id := fsm.ServiceID(r.PathValue("stack"), r.PathValue("service"))
	if _, err := store.Service(id); err != nil {
		return err
	}
	return n.mergeLogs(w, r, q, func() ([]logSource, error) {
		store, err := n.store()
		if err != nil {
			return nil, err
		}
		svc, err := store.Service(id)
		if err != nil {
			return nil, err
		}
		return logSources(store, svc)
	})
}

// logSource is one container's log: its name and the API address of the
// node that runs it.
type logSource struct{ name, addr string }

// logSources lists where the logs of a service's instances are.
func logSources(store *fsm.Store, svc *fsm.Service) ([]logSource, error) {
	insts, err := store.Instances(svc.ID)
	if err != nil {
		return nil, err
	}
	var sources []logSource
	for _, in := range insts {
		node, err := store.Node(in.NodeID)
		if err != nil {
			continue
		}
		sources = append(sources, logSource{fsm.ContainerName(svc.Stack, svc.Name, in.Number), net.JoinHostPort(node.Addr, strconv.Itoa(node.APIPort))})
	}
	return sources, nil
}

// mergeLogs fans out to the node of every source and merges the lines: by
// time without follow, as they come with follow (see followLogs).
func (n *Server) mergeLogs(w http.ResponseWriter, r *http.Request, q logQuery, sources func() ([]logSource, error)) error {
	srcs, err := sources()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if q.follow {
		return n.followLogs(w, r, q, srcs, sources)
	}
	lines := make(chan logLine, 256)
	var wg sync.WaitGroup
	for _, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.fetchLogs(r.Context(), src.addr, src.name, q, lines); err != nil && r.Context().Err() == nil {
				lines <- logLine{src: src.name, text: fmt.Sprintf("%s %s kontena: cannot read logs: %v", time.Now().UTC().Format(time.RFC3339Nano), src.name, err)}
			}
		}()
	}
	go func() { wg.Wait(); close(lines) }()
	var all []string
	for l := range lines {
		all = append(all, l.text)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i] < all[j] }) // RFC 3339 timestamps sort as text
	if q.tail > 0 && len(all) > q.tail {
		all = all[len(all)-q.tail:]
	}
	_, err = io.WriteString(w, strings.Join(all, "\n")+trailingNL(all))
	return err
}

// logLine is one line of a merged log: its container and its text
// ("timestamp container message").
type logLine struct {
	src, ts, text string
}

// followRescan is how often a follow looks for instances whose stream
// ended (the container stopped, was replaced or moved) or that are new.
const followRescan = time.Second

// followLogs streams the sources' lines as they come, for as long as the
// client listens. A container's log stream ends when the container stops,
// so a restart, a replacement or a move would silence the follow: every
// followRescan the sources are listed again and each one without a stream
// gets a new one that resumes after the last line it printed (a new
// instance starts from the query's own tail and since).
func (n *Server) followLogs(w http.ResponseWriter, r *http.Request, q logQuery, first []logSource, sources func() ([]logSource, error)) error {
	ctx := r.Context()
	flusher, _ := w.(http.Flusher)
	// The stream ends after followMaxIdle without a line or followMaxLife
	// in all (why: limits.go), with a last line that says so; each line
	// must reach the client within apiWriteTimeout.
	rc := http.NewResponseController(w)
	extendDeadline(w, followMaxLife+apiWriteTimeout)
	idle := time.NewTimer(followMaxIdle)
	defer idle.Stop()
	life := time.NewTimer(followMaxLife)
	defer life.Stop()
	endWith := func(why string) error {
		_ = rc.SetWriteDeadline(time.Now().Add(apiWriteTimeout))
		_, _ = fmt.Fprintf(w, "%s kontena: the follow ended (%s); run the command again to go on\n", time.Now().UTC().Format(time.RFC3339Nano), why)
		return nil
	}
	lines := make(chan logLine, 256)
	ended := make(chan string, 64)
	streaming := map[string]bool{}
	last := map[string]time.Time{} // container -> time of its last line
	open := func(src logSource) {
		sq := q
		if ts, ok := last[src.name]; ok {
			sq.since, sq.tail = ts.Format(time.RFC3339Nano), 0 // the rest of it (0: no tail limit)
		}
		streaming[src.name] = true
		go func() {
			err := n.fetchLogs(ctx, src.addr, src.name, sq, lines)
			if err != nil && ctx.Err() == nil {
				n.log.Debug("follow logs", "container", src.name, "err", err)
			}
			select {
			case ended <- src.name:
			case <-ctx.Done():
			}
		}()
	}
	for _, src := range first {
		open(src)
	}
	tick := time.NewTicker(followRescan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-idle.C:
			return endWith(fmt.Sprintf("no new line for %s", followMaxIdle))
		case <-life.C:
			return endWith(fmt.Sprintf("it lasted %s, the longest allowed", followMaxLife))
		case name := <-ended:
			delete(streaming, name)
		case <-tick.C:
			srcs, err := sources()
			if err != nil {
				continue // the service may be gone for a moment (upgrade); keep what streams
			}
			for _, src := range srcs {
				if !streaming[src.name] {
					open(src)
				}
			}
		case l := <-lines:
			// A resumed stream repeats lines at its since time: Docker's
			// since is inclusive.
			if ts, err := time.Parse(time.RFC3339Nano, l.ts); err == nil {
				if prev, ok := last[l.src]; ok && !ts.After(prev) {
					continue
				}
				last[l.src] = ts
			}
			_ = rc.SetWriteDeadline(time.Now().Add(apiWriteTimeout)) // a client that stopped reading
			if _, err := io.WriteString(w, l.text+"\n"); err != nil {
				return nil
			}
			if flusher != nil {
				flusher.Flush()
			}
			idle.Reset(followMaxIdle)
		}
	}
}

func trailingNL(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return "\n"
}

// fetchLogs reads one container's log lines from the node that runs it.
func (n *Server) fetchLogs(ctx context.Context, addr, name string, q logQuery, out chan<- logLine) error {
	u := api.BaseURL(addr) + "/v1/internal/containers/" + url.PathEscape(name) + "/logs?" + q.values().Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := n.peerHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ts, msg, _ := strings.Cut(sc.Text(), " ")
		select {
		case out <- logLine{src: name, ts: ts, text: ts + " " + name + " " + msg}:
		case <-ctx.Done():
			return nil
		}
	}
	return sc.Err()
}

// serveContainerLogs streams a container's log from this node's engine:
// one "timestamp message" line per log line, stdout and stderr together.
func (n *Server) serveContainerLogs(w http.ResponseWriter, r *http.Request) {
	q, err := parseLogQuery(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if n.eng == nil {
		writeErr(w, errNoEngine())
		return
	}
	name := r.PathValue("name")
	// Only the agent's containers: node certificates do not open the
	// whole engine.
	ins, err := n.eng.InspectManaged(r.Context(), name, "")
	if err != nil {
		writeErr(w, api.Errorf(api.CodeNotFound, "no kontena container %s on this node", name))
		return
	}
	logs, err := n.eng.Logs(r.Context(), name, engine.LogOptions{Follow: q.follow, Tail: q.tail, Since: q.since, Tty: ins.Config.Tty})
	if err != nil {
		writeErr(w, api.Errorf(api.CodeUnavailable, "read logs of %s: %v", name, err))
		return
	}
	defer logs.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_ = logs.CopyTo(&flushWriter{w: w})
}

// flushWriter flushes after every write so follow streams are live; one
// mutex keeps stdout and stderr lines from interleaving mid-line.
type flushWriter struct {
	mu sync.Mutex
	w  http.ResponseWriter
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return k, err
}
