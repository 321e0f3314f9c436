package fsm

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// invite makes a user through an invite at index idx and returns nothing:
// the tokens are "<email>-r" (refresh) and "<email>-a" (access).
func invite(t *testing.T, s *Store, idx uint64, email string, roles ...string) {
	t.Helper()
	mustApply(t, s, idx, &InviteCreate{Invite: Invite{ID: "i-" + email, Hash: "ih-" + email, Email: email, Roles: roles,
		CreatedBy: "admin", ExpiresAt: t0.Add(time.Hour)}})
	mustApply(t, s, idx+1, &InviteRedeem{Hash: "ih-" + email,
		Refresh: Token{ID: email + "-r", Hash: "h-" + email + "-r", User: email, Kind: TokenKindRefresh, ExpiresAt: t0.Add(24 * time.Hour)},
		Access:  Token{ID: email + "-a", Hash: "h-" + email + "-a", User: email, Kind: TokenKindAccess, ExpiresAt: t0.Add(time.Hour), Ancestors: []string{email + "-r"}}})
}

func TestInviteIsRedeemedOnce(t *testing.T) {
	s := newStore(t)
	invite(t, s, 2, "ann@example.com", RoleDeveloper)
	u, err := s.User("ann@example.com")
	if err != nil || !slices.Equal(u.Roles, []string{RoleDeveloper}) {
		t.Fatalf("user after invite: %+v %v", u, err)
	}
	_, err = s.Apply(4, &InviteRedeem{Hash: "ih-ann@example.com", Refresh: Token{ID: "x", Hash: "x", User: "ann@example.com"},
		Access: Token{ID: "y", Hash: "y", User: "ann@example.com"}}, audit("ann@example.com"))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("second redeem: %v, want not found", err)
	}
	mustApply(t, s, 5, &InviteCreate{Invite: Invite{ID: "i2", Hash: "ih2", Email: "bob@example.com", Roles: []string{RoleViewer}, ExpiresAt: t0.Add(-time.Second)}})
	_, err = s.Apply(6, &InviteRedeem{Hash: "ih2", Refresh: Token{ID: "b1", Hash: "b1", User: "bob@example.com"},
		Access: Token{ID: "b2", Hash: "b2", User: "bob@example.com"}}, audit("bob@example.com"))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("expired invite: %v, want invalid", err)
	}
	if _, err := s.User("bob@example.com"); err == nil {
		t.Fatal("an expired invite made a user")
	}
}

func TestRevokingATokenRevokesWhatWasMadeFromIt(t *testing.T) {
	s := newStore(t)
	invite(t, s, 2, "ann@example.com", RoleDeveloper)
	// An API token made from the access token, and one made from that.
	mustApply(t, s, 4, &TokenCreate{Token: Token{ID: "api1", Hash: "ha1", User: "ann@example.com", Ancestors: []string{"ann@example.com-r", "ann@example.com-a"}}})
	mustApply(t, s, 5, &TokenCreate{Token: Token{ID: "api2", Hash: "ha2", User: "ann@example.com", Ancestors: []string{"ann@example.com-r", "ann@example.com-a", "api1"}}})
	// The access token expires and is removed: its children stay, and
	// still go with the refresh token.
	mustApply(t, s, 6, &TokensExpire{Before: t0.Add(90 * time.Minute)})
	if _, err := s.Token("ann@example.com-a"); err == nil {
		t.Fatal("expired access token still in the state")
	}
	if _, err := s.Token("api2"); err != nil {
		t.Fatalf("API token went with its parent's expiry: %v", err)
	}
	mustApply(t, s, 7, &TokenRemove{ID: "ann@example.com-r"})
	for _, id := range []string{"ann@example.com-r", "api1", "api2"} {
		if _, err := s.Token(id); err == nil {
			t.Errorf("token %s survived the revocation of its ancestor", id)
		}
	}
	// A token may not be made from a revoked one.
	if _, err := s.Apply(8, &TokenCreate{Token: Token{ID: "api3", Hash: "ha3", User: "ann@example.com", Ancestors: []string{"api1"}}}, audit("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("token from a revoked parent: %v", err)
	}
}

func TestUserRemoveRevokesTheirTokensAndKeepsAMasterAdmin(t *testing.T) {
	s := newStore(t)
	invite(t, s, 2, "ann@example.com", RoleGridAdmin)
	// Tokens made from each other, whatever order their IDs sort in.
	for i, id := range []string{"a0", "z9", "m5"} {
		anc := []string{"ann@example.com-r", "ann@example.com-a"}
		if i > 0 {
			anc = append(anc, "a0")
		}
		mustApply(t, s, uint64(100+i), &TokenCreate{Token: Token{ID: id, Hash: "h" + id, User: "ann@example.com", Ancestors: anc}})
	}
	mustApply(t, s, 4, &UserRemove{Name: "ann@example.com"})
	if toks, _ := s.Tokens("ann@example.com"); len(toks) != 0 {
		t.Fatalf("tokens of a removed user: %v", toks)
	}
	if _, err := s.Apply(5, &UserRemove{Name: "admin"}, audit("admin")); !errors.Is(err, ErrConflict) {
		t.Fatalf("removing the last master_admin: %v", err)
	}
	if _, err := s.Apply(6, &UserRoles{Name: "admin", Remove: []string{RoleMasterAdmin}}, audit("admin")); !errors.Is(err, ErrConflict) {
		t.Fatalf("taking the last master_admin's role: %v", err)
	}
	invite(t, s, 7, "root@example.com", RoleMasterAdmin)
	mustApply(t, s, 9, &UserRoles{Name: "admin", Remove: []string{RoleMasterAdmin}, Add: []string{RoleViewer}})
	if u, _ := s.User("admin"); !slices.Equal(u.Roles, []string{RoleViewer}) {
		t.Fatalf("admin roles: %v", u.Roles)
	}
	if _, err := s.Apply(10, &UserRoles{Name: "admin", Add: []string{"root"}}, audit("x")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown role: %v", err)
	}
}

func TestTokenRefreshMovesTheSessionOnAndSetsRoles(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, &UserLogin{User: User{Name: "sso@example.com", Roles: []string{RoleGridAdmin}, Issuer: "https://idp", Subject: "42"},
		Refresh: Token{ID: "r", Hash: "hr", User: "sso@example.com", Kind: TokenKindRefresh, ExpiresAt: t0.Add(time.Hour)},
		Access:  Token{ID: "a", Hash: "ha", User: "sso@example.com", Kind: TokenKindAccess, ExpiresAt: t0.Add(time.Minute), Ancestors: []string{"r"}}})
	roles := []string{RoleViewer}
	mustApply(t, s, 3, &TokenRefresh{RefreshID: "r", ExpiresAt: t0.Add(2 * time.Hour), Roles: &roles,
		Access: Token{ID: "a2", Hash: "ha2", User: "sso@example.com", Kind: TokenKindAccess, ExpiresAt: t0.Add(time.Hour), Ancestors: []string{"r"}}})
	u, _ := s.User("sso@example.com")
	rt, _ := s.Token("r")
	if !slices.Equal(u.Roles, roles) || !rt.ExpiresAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("after refresh: roles %v, session until %s", u.Roles, rt.ExpiresAt)
	}
	// Another provider's subject may not take the user over.
	_, err := s.Apply(4, &UserLogin{User: User{Name: "sso@example.com", Roles: []string{RoleMasterAdmin}, Issuer: "https://evil", Subject: "42"},
		Refresh: Token{ID: "r9", Hash: "hr9", User: "sso@example.com", Kind: TokenKindRefresh},
		Access:  Token{ID: "a9", Hash: "ha9", User: "sso@example.com", Kind: TokenKindAccess}}, audit("x"))
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("login of another issuer's subject: %v", err)
	}
}

func TestTokensTouchKeepsTheLatestUse(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, &TokensTouch{Used: map[string]time.Time{"t1": t0.Add(time.Minute), "gone": t0}})
	mustApply(t, s, 3, &TokensTouch{Used: map[string]time.Time{"t1": t0}})
	if tk, _ := s.Token("t1"); !tk.LastUsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("last used %s", tk.LastUsedAt)
	}
}

func TestAuditNoteRecordsTheResult(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, &AuditNote{Action: "login.invite", Resource: "user/x", Result: "denied: unknown code"})
	recs, _ := s.Audit(1)
	if len(recs) != 1 || recs[0].Action != "login.invite" || recs[0].Result != "denied: unknown code" {
		t.Fatalf("audit: %+v", recs)
	}
}

func TestKeyRotationResealsProviderRefreshTokens(t *testing.T) {
	s := newStore(t)
	mustApply(t, s, 2, &UserLogin{User: User{Name: "sso@example.com", Roles: []string{RoleViewer}, Issuer: "https://idp", Subject: "1"},
		Refresh: Token{ID: "r", Hash: "hr", User: "sso@example.com", Kind: TokenKindRefresh, IdPRefresh: []byte("old-sealed")},
		Access:  Token{ID: "a", Hash: "ha", User: "sso@example.com", Kind: TokenKindAccess, Ancestors: []string{"r"}}})
	mustApply(t, s, 3, &UserLogin{User: User{Name: "sso2@example.com", Issuer: "https://idp", Subject: "2"},
		Refresh: Token{ID: "r2", Hash: "hr2", User: "sso2@example.com", Kind: TokenKindRefresh, IdPRefresh: []byte("renewed-meanwhile")},
		Access:  Token{ID: "a2", Hash: "ha2", User: "sso2@example.com", Kind: TokenKindAccess, Ancestors: []string{"r2"}}})
	mustApply(t, s, 4, &MasterKeyRotate{Generation: 1, Link: make([]byte, 60), JoinTokenSealed: []byte("j"), Secrets: map[string]Resealed{},
		IdPRefresh: map[string]ResealedToken{
			"r":  {Sealed: []byte("new-sealed"), Was: SealedDigest([]byte("old-sealed"))},
			"r2": {Sealed: []byte("stale"), Was: SealedDigest([]byte("what the leader read"))},
		}})
	if tk, _ := s.Token("r"); string(tk.IdPRefresh) != "new-sealed" {
		t.Errorf("re-sealed: %q", tk.IdPRefresh)
	}
	if tk, _ := s.Token("r2"); string(tk.IdPRefresh) != "renewed-meanwhile" {
		t.Errorf("one renewed meanwhile was overwritten: %q", tk.IdPRefresh)
	}
}
