package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/integration/harness"
	"github.com/kontena-ng/kontena/integration/lincheck"
)

// linKeys are the registers of the checked resource: labels of node l1,
// fresh for each history (the model starts with every key unset).
func linKeys(history int) []string {
	keys := make([]string, 6)
	for i := range keys {
		keys[i] = fmt.Sprintf("lin-%d-%c", history, 'a'+i)
	}
	return keys
}

// A nemesis breaks the grid for a while and heals it.
type nemesis struct {
	name   string
	break_ func(ctx context.Context, t *testing.T, tg *testGrid) (heal func())
}

func (tg *testGrid) leaderNode(ctx context.Context, t *testing.T) *harness.Node {
	t.Helper()
	var name string
	eventually(t, 60*time.Second, "a leader", func() error {
		h, _ := tg.health(ctx)
		if name = h.Leader; name == "" {
			return fmt.Errorf("no leader: %+v", h)
		}
		return nil
	})
	return tg.nodes[name]
}

func (tg *testGrid) followerNode(ctx context.Context, t *testing.T) *harness.Node {
	leader := tg.leaderNode(ctx, t)
	for _, name := range tg.order {
		if tg.nodes[name] != leader {
			return tg.nodes[name]
		}
	}
	return nil
}

func restartDaemon(ctx context.Context, t *testing.T, n *harness.Node) {
	must(t, n.StartDaemon(ctx, "up", "--data-dir", dataDir, "--advertise", n.IP()))
}

var nemeses = []nemesis{
	{"kill -9 the leader", func(ctx context.Context, t *testing.T, tg *testGrid) func() {
		n := tg.leaderNode(ctx, t)
		must(t, n.KillDaemon(ctx))
		return func() { restartDaemon(ctx, t, n) }
	}},
	{"freeze a follower (SIGSTOP of its node)", func(ctx context.Context, t *testing.T, tg *testGrid) func() {
		n := tg.followerNode(ctx, t)
		must(t, n.Pause(ctx))
		return func() { must(t, n.Unpause(ctx)) }
	}},
	{"cut the leader off the network", func(ctx context.Context, t *testing.T, tg *testGrid) func() {
		n := tg.leaderNode(ctx, t)
		must(t, n.Disconnect(ctx))
		return func() { must(t, n.Reconnect(ctx)) }
	}},
	{"kill -9 every node at once", func(ctx context.Context, t *testing.T, tg *testGrid) func() {
		for _, name := range tg.order {
			must(t, tg.nodes[name].KillDaemon(ctx))
		}
		return func() {
			for _, name := range tg.order {
				restartDaemon(ctx, t, tg.nodes[name])
			}
		}
	}},
}

// TestLinearizable records histories of label writes and consistent reads
// from concurrent clients against three voters while a nemesis kills,
// freezes or cuts off a node, and checks each history with porcupine.
// Every acknowledged write must be seen by every later consistent read,
// across leader changes and a restart of every node (durability).
// KONTENA_LIN_HISTORIES sets how many histories (bench/chaos.sh runs many).
func TestLinearizable(t *testing.T) {
	histories := len(nemeses)
	if s := os.Getenv("KONTENA_LIN_HISTORIES"); s != "" {
		histories, _ = strconv.Atoi(s)
	}
	checkLinearizable(t, []string{"l1", "l2", "l3"}, nemeses, histories)
}

// TestLinearizable5 is the same check on five voters, where a nemesis
// leaves a majority of three: the leader killed, then cut off.
func TestLinearizable5(t *testing.T) {
	checkLinearizable(t, []string{"f1", "f2", "f3", "f4", "f5"}, []nemesis{nemeses[0], nemeses[2]}, 2)
}

func checkLinearizable(t *testing.T, names []string, nems []nemesis, histories int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(histories)*3*time.Minute+5*time.Minute)
	defer cancel()
	tg := newGrid(t, "lin", len(names), names...)
	tg.order = names
	c := tg.config(t).Grids[tg.name]
	addrs := []string{}
	for _, name := range names {
		addrs = append(addrs, tg.nodes[name].IP()+":9700")
	}
	only := -1 // KONTENA_LIN_NEMESIS=N runs only nemesis N (to chase a violation)
	if s := os.Getenv("KONTENA_LIN_NEMESIS"); s != "" {
		only, _ = strconv.Atoi(s)
	}
	illegal := 0
	for i := range histories {
		nm := nems[i%len(nems)]
		if only >= 0 {
			nm = nemeses[only]
		}
		tg.waitLevel(ctx)
		keys := linKeys(i + 1)
		h, stale := runHistory(ctx, t, addrs, []byte(c.CACert), c.Token, names[0], keys, func() func() { return nm.break_(ctx, t, tg) })
		dropLabels(ctx, t, addrs, []byte(c.CACert), c.Token, names[0], keys)
		res, info := h.Check(2 * time.Minute)
		staleRes := h.CheckWith(stale, time.Minute)
		t.Logf("MEASURED %d voters, history %d (%s): %s: %s; with %s of one client reading from any voter, default reads: %s", len(names), i+1, nm.name, h.Summary(), res, stale.Summary(), staleRes)
		if res == porcupine.Unknown {
			t.Errorf("history %d (%s): the checker did not decide within its timeout; a smaller history (fewer clients or keys per history) is needed", i+1, nm.name)
		}
		if res == porcupine.Illegal {
			illegal++
			_ = h.WriteFile(filepath.Join(os.TempDir(), fmt.Sprintf("kontena-history-%d.jsonl", i+1)))
			out := filepath.Join(os.TempDir(), fmt.Sprintf("kontena-history-%d.html", i+1))
			if err := porcupine.VisualizePath(lincheck.Model, info, out); err == nil {
				t.Errorf("history %d (%s) is not linearizable; see %s", i+1, nm.name, out)
			} else {
				t.Errorf("history %d (%s) is not linearizable (visualization: %v)", i+1, nm.name, err)
			}
		}
	}
	t.Logf("MEASURED %d voters: %d histories, %d not linearizable", len(names), histories, illegal)
}

// dropLabels removes a history's keys from the node's labels, so that the
// node, which every history writes to, stays the same size however many
// histories run (a long run otherwise grows every entry and every replay).
func dropLabels(ctx context.Context, t *testing.T, addrs []string, ca []byte, token, node string, keys []string) {
	t.Helper()
	cl, err := api.NewClient(addrs, ca, token, nil)
	must(t, err)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		if _, err = cl.Do(ctx, http.MethodPatch, "/v1/nodes/"+node, api.NodeUpdateRequest{RemoveLabels: keys}, nil); err == nil {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("remove the history's labels from %s: %v", node, err)
}

// runHistory runs clients for a few seconds, breaks the grid, heals it and
// runs on until every key was written and read after the heal. Consistent
// reads go in h; one more client's default reads (any caught-up voter)
// go in stale, which is reported, not required to be linearizable.
func runHistory(ctx context.Context, t *testing.T, addrs []string, ca []byte, token, node string, keys []string, breakGrid func() func()) (h, stale *lincheck.History) {
	t.Helper()
	h, stale = lincheck.NewHistory(), lincheck.NewHistory()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const clients = 4
	for id := range clients + 1 {
		// Each client starts at another node and fails over as the CLI does.
		rot := append(append([]string(nil), addrs[id%len(addrs):]...), addrs[:id%len(addrs)]...)
		cl, err := api.NewClient(rot, ca, token, nil)
		must(t, err)
		rec := h
		if id == clients {
			rec = stale
		} else {
			cl = cl.Consistent()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			client(ctx, id, cl, rec, node, keys, id == clients, stop)
		}()
	}
	time.Sleep(3 * time.Second)
	heal := breakGrid()
	time.Sleep(5 * time.Second)
	heal()
	time.Sleep(8 * time.Second)
	close(stop)
	wg.Wait()
	return h, stale
}

// client puts and gets random keys until stop; a read-only client (the
// default-read one) only gets.
func client(ctx context.Context, id int, cl *api.Client, h *lincheck.History, node string, keys []string, readOnly bool, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		key := keys[rng.IntN(len(keys))]
		in := lincheck.Input{Key: key}
		if !readOnly && rng.IntN(2) == 0 {
			in = lincheck.Input{Put: true, Key: key, Value: fmt.Sprintf("c%d-%d", id, n)}
		}
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		call := h.Call()
		out, err := linOp(octx, cl, node, in)
		cancel()
		if err != nil {
			pause := 100 * time.Millisecond
			if !notApplied(err) {
				h.Failed(id, call, in)
				// A put of unknown outcome stays concurrent with all that
				// follows; the client backs off, as a user would, so a
				// fault adds a few of them, not hundreds (the check is
				// exponential in them).
				if in.Put {
					pause = time.Second
				}
			}
			time.Sleep(pause)
			continue
		}
		h.Done(id, call, in, out)
		// A short pause keeps histories to a size the checker decides in
		// seconds (it is NP-hard in the concurrency of a key).
		time.Sleep(time.Duration(5+rng.IntN(10)) * time.Millisecond)
	}
}

// linOp runs one operation on the registers: labels of node's record
// (the node need not be up: its record is in the state).
func linOp(ctx context.Context, cl *api.Client, node string, in lincheck.Input) (lincheck.Output, error) {
	path := "/v1/nodes/" + node
	if in.Put {
		req := api.NodeUpdateRequest{RemoveLabels: []string{in.Key}, AddLabels: []string{in.Key + "=" + in.Value}}
		_, err := cl.Do(ctx, http.MethodPatch, path, req, nil)
		return lincheck.Output{}, err
	}
	var rec fsm.Node
	if _, err := cl.Do(ctx, http.MethodGet, path, nil, &rec); err != nil {
		return lincheck.Output{}, err
	}
	for _, l := range rec.Labels {
		if k, v, ok := strings.Cut(l, "="); ok && k == in.Key {
			return lincheck.Output{Value: v}, nil
		}
	}
	return lincheck.Output{}, nil
}

// notApplied: the operation certainly did not take effect: no node took
// the connection, or the API refused it before the log (a 4xx). Anything
// else (a timeout, a 5xx after the entry may have been appended) leaves a
// put of unknown outcome.
func notApplied(err error) bool {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Status >= 400 && ae.Status < 500
	}
	var ue *api.UnreachableError
	if !errors.As(err, &ue) || len(ue.Errs) == 0 {
		return false
	}
	for _, e := range ue.Errs {
		var op *net.OpError
		if !errors.As(e, &op) || op.Op != "dial" {
			return false
		}
	}
	return true
}

// TestDurableDiskFull: the leader's data dir fills up (its own small file
// system) while clients write; once space is back every node is killed -9
// and restarted; the history, with its reads after the restart, must be
// linearizable: nothing acknowledged is lost, nothing refused appears.
func TestDurableDiskFull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	names := []string{"q1", "q2", "q3"}
	smallDisk := func(g *harness.Grid) { g.Tmpfs = []string{dataDir + ":rw,size=64m,mode=0700"} }
	tg := newGridWith(t, "full", 3, smallDisk, names...)
	tg.order = names
	c := tg.config(t).Grids[tg.name]
	var addrs []string
	for _, name := range names {
		addrs = append(addrs, tg.nodes[name].IP()+":9700")
	}
	tg.waitLevel(ctx)
	var full *harness.Node
	fill := func() func() {
		full = tg.leaderNode(ctx, t)
		// dd stops at ENOSPC: the file system is full.
		_, _, _, err := full.Exec(ctx, "sh", "-c", "dd if=/dev/zero of="+dataDir+"/fill bs=1M 2>/dev/null; df -k "+dataDir)
		must(t, err)
		return func() {
			_, _, _, err := full.Exec(ctx, "rm", "-f", dataDir+"/fill")
			must(t, err)
			for _, name := range names {
				must(t, tg.nodes[name].KillDaemon(ctx))
			}
			for _, name := range names {
				restartDaemon(ctx, t, tg.nodes[name])
			}
		}
	}
	h, _ := runHistory(ctx, t, addrs, []byte(c.CACert), c.Token, names[0], linKeys(1), fill)
	res, info := h.Check(2 * time.Minute)
	t.Logf("MEASURED disk full on the leader (%s), then kill -9 of every node: %s: %s", full.Name(), h.Summary(), res)
	if res != porcupine.Ok {
		out := filepath.Join(os.TempDir(), "kontena-history-diskfull.html")
		_ = h.WriteFile(filepath.Join(os.TempDir(), "kontena-history-diskfull.jsonl"))
		_ = porcupine.VisualizePath(lincheck.Model, info, out)
		t.Fatalf("the history is %s; see %s", res, out)
	}
	// The grid is whole again: every voter answers and is level.
	tg.waitLevel(ctx)
	// The fault was real: the leader's writes hit the full disk.
	if log := full.DaemonLog(ctx); !strings.Contains(log, "no space left on device") {
		t.Errorf("%s's log never mentions a full disk: the fault did not happen", full.Name())
	}
}
