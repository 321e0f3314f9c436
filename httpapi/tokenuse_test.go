package httpapi

import (
	"context"
	"testing"
	"time"
)

// TestTokenUpkeep: the leader records admitted uses and removes expired
// tokens from the state.
func TestTokenUpkeep(t *testing.T) {
	g := newTableGrid(t)
	n := g.srv
	ctx := context.Background()
	expired := addToken(t, n, time.Now().UTC().Add(-time.Minute))
	store, _ := n.store()
	old, err := store.TokenByHash(HashToken(expired))
	if err != nil {
		t.Fatal(err)
	}
	used := time.Now().UTC().Truncate(time.Second)
	n.uses.record("t1", used)
	n.flushTokenUses(ctx)
	if tk, _ := store.Token("t1"); !tk.LastUsedAt.Equal(used) {
		t.Fatalf("last use of t1: %s, want %s", tk.LastUsedAt, used)
	}
	if len(n.uses.take()) != 0 {
		t.Fatal("flushed uses were kept")
	}
	n.expireTokens(ctx, time.Now().UTC())
	if _, err := store.Token(old.ID); err == nil {
		t.Fatal("expired token still in the state")
	}
	if _, err := store.Token("t1"); err != nil {
		t.Fatalf("a token without expiry was removed: %v", err)
	}
	if anyExpired(store, time.Now().UTC()) {
		t.Fatal("something expired is left")
	}
}
