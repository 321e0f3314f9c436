package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/fsm"
)

// Token upkeep: when each token was last used, and removing expired tokens
// and invites from the state. A use is not worth a Raft entry of its own:
// each voter notes the uses it admits, and every tokenFlushEvery the
// leader commits its own and the followers send theirs to it.
const tokenFlushEvery = 30 * time.Second

// tokenUses are the uses a voter admitted since its last flush.
type tokenUses struct {
	mu   sync.Mutex
	used map[string]time.Time
}

func (u *tokenUses) record(id string, at time.Time) {
	if id == "" {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.used == nil {
		u.used = map[string]time.Time{}
	}
	if at.After(u.used[id]) {
		u.used[id] = at.UTC().Truncate(time.Second)
	}
}

// take returns and forgets the uses noted so far.
func (u *tokenUses) take() map[string]time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := u.used
	u.used = nil
	return out
}

// merge puts uses back (a flush that failed).
func (u *tokenUses) merge(m map[string]time.Time) {
	for id, at := range m {
		u.record(id, at)
	}
}

// RunTokenUpkeep flushes token uses and, on the leader, removes expired
// tokens and invites, until ctx ends.
func (n *Server) RunTokenUpkeep(ctx context.Context) {
	t := time.NewTicker(tokenFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.flushTokenUses(ctx)
			n.expireTokens(ctx, time.Now().UTC())
		}
	}
}

func (n *Server) flushTokenUses(ctx context.Context) {
	rn := n.voter()
	if rn == nil {
		return
	}
	used := n.uses.take()
	if len(used) == 0 {
		return
	}
	var err error
	if rn.IsLeader() {
		_, _, err = n.apply(ctx, &fsm.TokensTouch{Used: used}, nil)
	} else {
		err = n.sendUses(ctx, used)
	}
	if err != nil {
		n.uses.merge(used)
		n.log.Debug("token uses not recorded yet", "err", err)
	}
}

// sendUses gives a follower's token uses to the leader, as this voter.
func (n *Server) sendUses(ctx context.Context, used map[string]time.Time) error {
	rn := n.voter()
	leader := rn.Leader()
	node, err := rn.Store().Node(string(leader))
	if leader == "" || err != nil {
		return api.Errorf(api.CodeUnavailable, "no leader to send token uses to")
	}
	body, _ := json.Marshal(fsm.TokensTouch{Used: used})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	url := api.BaseURL(net.JoinHostPort(node.Addr, strconv.Itoa(node.APIPort))) + "/v1/tokens/used"
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := n.peerHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return api.Errorf(api.CodeUnavailable, "leader answered %s to token uses", resp.Status)
	}
	return nil
}

// postTokenUses is a voter handing the leader its token uses.
func (n *Server) postTokenUses(w http.ResponseWriter, r *http.Request, p *principal) error {
	var req fsm.TokensTouch
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if len(req.Used) > 100000 {
		return api.Errorf(api.CodeInvalid, "%d token uses in one request: at most 100000", len(req.Used))
	}
	_, idx, err := n.apply(r.Context(), &fsm.TokensTouch{Used: maps.Clone(req.Used)}, nil)
	if err != nil {
		return err
	}
	return writeJSON(w, idx, map[string]int{"recorded": len(req.Used)})
}

// expireTokens removes, on the leader, what expired before now.
func (n *Server) expireTokens(ctx context.Context, now time.Time) {
	rn := n.voter()
	if rn == nil || !rn.IsLeader() || !anyExpired(rn.Store(), now) {
		return
	}
	if _, _, err := n.apply(ctx, &fsm.TokensExpire{Before: now}, nil); err != nil {
		n.log.Warn("could not remove expired tokens", "err", err)
	}
}

// anyExpired tells whether a token or invite of the state expired.
func anyExpired(store *fsm.Store, now time.Time) bool {
	v := store.Snapshot()
	toks, _ := v.Tokens("")
	for _, t := range toks {
		if t.Expired(now) {
			return true
		}
	}
	invs, _ := v.Invites()
	for _, i := range invs {
		if now.After(i.ExpiresAt) {
			return true
		}
	}
	return false
}
