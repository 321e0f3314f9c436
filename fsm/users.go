package fsm

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// The user and invite tables.
const (
	TableUsers   = "users"
	TableInvites = "invites"
)

func usersTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableUsers, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Name")}}
}

func invitesTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableInvites, Indexes: map[string]*memdb.IndexSchema{
		"id":   idIndex("ID"),
		"hash": {Name: "hash", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Hash"}},
	}}
}

// Roles a user may hold. Kontena's, widened where teams need them.
const (
	// RoleMasterAdmin: everything, users and roles included.
	RoleMasterAdmin = "master_admin"
	// RoleUserAdmin: users and invites, nothing else.
	RoleUserAdmin = "user_admin"
	// RoleGridAdmin: nodes, grid settings, join tokens, VPN, vault and
	// every stack.
	RoleGridAdmin = "grid_admin"
	// RoleDeveloper: stacks (optionally only those matching the user's
	// patterns), services, logs, exec, vault writes.
	RoleDeveloper = "developer"
	// RoleViewer: read-only, never a secret value, never exec.
	RoleViewer = "viewer"
)

// Roles lists every role, the strongest first.
var Roles = []string{RoleMasterAdmin, RoleUserAdmin, RoleGridAdmin, RoleDeveloper, RoleViewer}

// ValidRole tells whether r is a role.
func ValidRole(r string) bool { return slices.Contains(Roles, r) }

// RoleImplies tells whether holding role has gives everything role want
// gives: master_admin gives all, grid_admin gives developer and viewer,
// developer gives viewer; user_admin gives only itself.
func RoleImplies(has, want string) bool {
	switch has {
	case RoleMasterAdmin:
		return true
	case RoleGridAdmin:
		return want == RoleGridAdmin || want == RoleDeveloper || want == RoleViewer
	case RoleDeveloper:
		return want == RoleDeveloper || want == RoleViewer
	}
	return has == want
}

// AnyRoleImplies tells whether one of roles implies want.
func AnyRoleImplies(roles []string, want string) bool {
	return slices.ContainsFunc(roles, func(r string) bool { return RoleImplies(r, want) })
}

// User is an account that may hold tokens.
type User struct {
	Name  string   `json:"name"`
	Email string   `json:"email,omitempty"`
	Roles []string `json:"roles"`
	// Stacks, when set, limits a developer to the stacks whose names
	// match one of these patterns (path.Match: `shop-*`).
	Stacks []string `json:"stacks,omitempty"`
	// Issuer and Subject: a user of single sign-on (OpenID Connect) is
	// the provider's subject; their roles come from its claims.
	Issuer    string    `json:"issuer,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Validate checks a user before it is stored.
func (u *User) Validate() error {
	if u.Name == "" || len(u.Name) > 254 || strings.ContainsAny(u.Name, " /\t\n") {
		return fmt.Errorf("user name %q: 1 to 254 characters, no spaces or slashes: %w", u.Name, ErrInvalid)
	}
	if err := ValidateRoles(u.Roles); err != nil {
		return err
	}
	return ValidateStackPatterns(u.Stacks)
}

// ValidateRoles checks a list of role names.
func ValidateRoles(roles []string) error {
	for _, r := range roles {
		if !ValidRole(r) {
			return fmt.Errorf("role %q: expected one of %s: %w", r, strings.Join(Roles, ", "), ErrInvalid)
		}
	}
	return nil
}

// ValidateStackPatterns checks developer stack patterns.
func ValidateStackPatterns(pats []string) error {
	for _, p := range pats {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return fmt.Errorf("stack pattern %q is not a valid pattern (such as shop-*): %w", p, ErrInvalid)
		}
	}
	return nil
}

// StackAllowed tells whether a user limited to pats may act on stack.
func StackAllowed(pats []string, stack string) bool {
	if len(pats) == 0 {
		return true
	}
	for _, p := range pats {
		if ok, _ := path.Match(p, stack); ok {
			return true
		}
	}
	return false
}

// Invite is a one-time code that makes (or gives roles to) the user
// Email. Only its SHA-256 hash is stored.
type Invite struct {
	ID        string    `json:"id"`
	Hash      string    `json:"hash"`
	Email     string    `json:"email"`
	Roles     []string  `json:"roles"`
	Stacks    []string  `json:"stacks,omitempty"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// User command numbers (persisted: never renumber).
const (
	MsgUserRemove   MsgType = 36
	MsgUserRoles    MsgType = 37
	MsgInviteCreate MsgType = 38
	MsgInviteRedeem MsgType = 39
	MsgUserLogin    MsgType = 40
	MsgAdminRecover MsgType = 42
)

// UserRemove removes a user and revokes every token of theirs.
type UserRemove struct {
	Name string `json:"name"`
}

func (*UserRemove) MsgType() MsgType   { return MsgUserRemove }
func (*UserRemove) name() string       { return "user.remove" }
func (c *UserRemove) resource() string { return "user/" + c.Name }

func (c *UserRemove) apply(a *applier) (any, error) {
	u, err := a.user(c.Name)
	if err != nil {
		return nil, err
	}
	if err := a.keepAMasterAdmin(u.Name, nil); err != nil {
		return nil, err
	}
	// Every token made from a user's token is that user's too: deleting
	// theirs revokes all.
	n, err := a.txn.DeleteAll(TableTokens, "user", u.Name)
	if err != nil {
		return nil, err
	}
	if err := a.txn.Delete(TableUsers, u); err != nil {
		return nil, err
	}
	return u, a.event("user.removed", "user/"+u.Name, fmt.Sprintf("user %s removed and %d tokens revoked", u.Name, n))
}

// UserRoles adds and removes roles of a user, and sets their stack
// patterns.
type UserRoles struct {
	Name   string    `json:"name"`
	Add    []string  `json:"add,omitempty"`
	Remove []string  `json:"remove,omitempty"`
	Stacks *[]string `json:"stacks,omitempty"`
}

func (*UserRoles) MsgType() MsgType   { return MsgUserRoles }
func (*UserRoles) name() string       { return "user.roles" }
func (c *UserRoles) resource() string { return "user/" + c.Name }

func (c *UserRoles) apply(a *applier) (any, error) {
	u, err := a.user(c.Name)
	if err != nil {
		return nil, err
	}
	roles := slices.Clone(u.Roles)
	for _, r := range c.Add {
		if !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	roles = slices.DeleteFunc(roles, func(r string) bool { return slices.Contains(c.Remove, r) })
	if err := a.keepAMasterAdmin(u.Name, roles); err != nil {
		return nil, err
	}
	cp := *u
	cp.Roles = append([]string{}, roles...)
	if c.Stacks != nil {
		cp.Stacks = slices.Clone(*c.Stacks)
	}
	if err := cp.Validate(); err != nil {
		return nil, err
	}
	if err := a.txn.Insert(TableUsers, &cp); err != nil {
		return nil, err
	}
	return &cp, a.event("user.roles", "user/"+cp.Name, fmt.Sprintf("user %s has roles %v", cp.Name, cp.Roles))
}

// setRoles replaces a user's roles; the grid always keeps a master_admin.
func (a *applier) setRoles(name string, roles []string) error {
	u, err := a.user(name)
	if err != nil {
		return err
	}
	if err := a.keepAMasterAdmin(name, roles); err != nil {
		return err
	}
	cp := *u
	cp.Roles = slices.Clone(roles)
	if cp.Roles == nil {
		cp.Roles = []string{}
	}
	if err := cp.Validate(); err != nil {
		return err
	}
	return a.txn.Insert(TableUsers, &cp)
}

// keepAMasterAdmin refuses a change that would leave the grid without a
// master_admin: user name would be left with roles (nil: removed).
func (a *applier) keepAMasterAdmin(name string, roles []string) error {
	if slices.Contains(roles, RoleMasterAdmin) {
		return nil
	}
	users, err := list[*User](a.txn, TableUsers)
	if err != nil {
		return err
	}
	for _, u := range users {
		if u.Name != name && slices.Contains(u.Roles, RoleMasterAdmin) {
			return nil
		}
	}
	if u, _ := a.user(name); u == nil || !slices.Contains(u.Roles, RoleMasterAdmin) {
		return nil // the grid had none to keep (a restored or old state)
	}
	return fmt.Errorf("%s is the grid's last master_admin: give another user that role first: %w", name, ErrConflict)
}

func (a *applier) user(name string) (*User, error) {
	raw, err := a.txn.First(TableUsers, "id", name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return raw.(*User), nil
}

// InviteCreate stores an invite (its hash).
type InviteCreate struct {
	Invite Invite `json:"invite"`
}

func (*InviteCreate) MsgType() MsgType   { return MsgInviteCreate }
func (*InviteCreate) name() string       { return "user.invite" }
func (c *InviteCreate) resource() string { return "user/" + c.Invite.Email }

func (c *InviteCreate) apply(a *applier) (any, error) {
	inv := c.Invite
	u := User{Name: inv.Email, Roles: inv.Roles, Stacks: inv.Stacks}
	if err := u.Validate(); err != nil {
		return nil, err
	}
	if inv.ID == "" || inv.Hash == "" || inv.ExpiresAt.IsZero() {
		return nil, fmt.Errorf("invite needs an ID, a hash and an expiry: %w", ErrInvalid)
	}
	if raw, _ := a.txn.First(TableInvites, "id", inv.ID); raw != nil {
		return nil, fmt.Errorf("invite %s exists: %w", inv.ID, ErrConflict)
	}
	inv.Roles, inv.Stacks = slices.Clone(inv.Roles), slices.Clone(inv.Stacks)
	if err := a.txn.Insert(TableInvites, &inv); err != nil {
		return nil, err
	}
	return &inv, a.event("user.invited", "user/"+inv.Email, fmt.Sprintf("%s invited %s as %v", inv.CreatedBy, inv.Email, inv.Roles))
}

// InviteRedeem trades an invite code (its hash) for a login: the user is
// made (or given the invite's roles) and gets a refresh and an access
// token. An invite is used once.
type InviteRedeem struct {
	Hash    string `json:"hash"`
	Refresh Token  `json:"refresh"`
	Access  Token  `json:"access"`
}

func (*InviteRedeem) MsgType() MsgType   { return MsgInviteRedeem }
func (*InviteRedeem) name() string       { return "user.login" }
func (c *InviteRedeem) resource() string { return "user/" + c.Access.User }

func (c *InviteRedeem) apply(a *applier) (any, error) {
	raw, err := a.txn.First(TableInvites, "hash", c.Hash)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("invite code is unknown or was used already: %w", ErrNotFound)
	}
	inv := raw.(*Invite)
	if a.now.After(inv.ExpiresAt) {
		return nil, fmt.Errorf("invite for %s expired at %s: ask for a new one: %w", inv.Email, inv.ExpiresAt.Format(time.RFC3339), ErrInvalid)
	}
	if c.Access.User != inv.Email || c.Refresh.User != inv.Email {
		return nil, fmt.Errorf("the invite is for %s: %w", inv.Email, ErrInvalid)
	}
	if err := a.txn.Delete(TableInvites, inv); err != nil {
		return nil, err
	}
	u, err := a.user(inv.Email)
	switch {
	case err == nil:
		cp := *u
		for _, r := range inv.Roles {
			if !slices.Contains(cp.Roles, r) {
				cp.Roles = append(slices.Clone(cp.Roles), r)
			}
		}
		if len(inv.Stacks) > 0 {
			cp.Stacks = slices.Clone(inv.Stacks)
		}
		u = &cp
	default:
		u = &User{Name: inv.Email, Email: inv.Email, Roles: slices.Clone(inv.Roles), Stacks: slices.Clone(inv.Stacks), CreatedAt: a.now}
	}
	if err := u.Validate(); err != nil {
		return nil, err
	}
	if err := a.txn.Insert(TableUsers, u); err != nil {
		return nil, err
	}
	if _, err := a.insertToken(c.Refresh); err != nil {
		return nil, err
	}
	if _, err := a.insertToken(c.Access); err != nil {
		return nil, err
	}
	return u, a.event("user.login", "user/"+u.Name, fmt.Sprintf("%s redeemed an invite as %v", u.Name, u.Roles))
}

// UserLogin is a single sign-on login: the provider's subject is the user
// (made on first login), with the roles its claims map to now.
type UserLogin struct {
	User    User  `json:"user"`
	Refresh Token `json:"refresh"`
	Access  Token `json:"access"`
}

func (*UserLogin) MsgType() MsgType   { return MsgUserLogin }
func (*UserLogin) name() string       { return "user.login" }
func (c *UserLogin) resource() string { return "user/" + c.User.Name }

func (c *UserLogin) apply(a *applier) (any, error) {
	u := c.User
	if u.Issuer == "" || u.Subject == "" {
		return nil, fmt.Errorf("a single sign-on user needs an issuer and a subject: %w", ErrInvalid)
	}
	if err := u.Validate(); err != nil {
		return nil, err
	}
	if old, err := a.user(u.Name); err == nil {
		if old.Issuer != u.Issuer || old.Subject != u.Subject {
			return nil, fmt.Errorf("user %s exists and is not the subject %q of %s: %w", u.Name, u.Subject, u.Issuer, ErrConflict)
		}
		u.CreatedAt, u.Stacks = old.CreatedAt, old.Stacks
		if err := a.keepAMasterAdmin(u.Name, u.Roles); err != nil {
			return nil, err
		}
	}
	u.Roles = slices.Clone(u.Roles)
	if err := a.txn.Insert(TableUsers, &u); err != nil {
		return nil, err
	}
	if _, err := a.insertToken(c.Refresh); err != nil {
		return nil, err
	}
	if _, err := a.insertToken(c.Access); err != nil {
		return nil, err
	}
	return &u, a.event("user.login", "user/"+u.Name, fmt.Sprintf("%s logged in through %s as %v", u.Name, u.Issuer, u.Roles))
}

// AdminRecover gives the user admin (made again if it was removed) the
// master_admin role and a new login: what the root of a voter machine
// asks for with the voter's certificate when no admin can log in.
type AdminRecover struct {
	Refresh Token `json:"refresh"`
	Access  Token `json:"access"`
}

func (*AdminRecover) MsgType() MsgType { return MsgAdminRecover }
func (*AdminRecover) name() string     { return "user.recover_admin" }
func (*AdminRecover) resource() string { return "user/admin" }

func (c *AdminRecover) apply(a *applier) (any, error) {
	if c.Refresh.User != "admin" || c.Access.User != "admin" {
		return nil, fmt.Errorf("a recovery logs in the user admin: %w", ErrInvalid)
	}
	u, err := a.user("admin")
	if err != nil {
		u = &User{Name: "admin", Roles: []string{}, CreatedAt: a.now}
	}
	cp := *u
	if !slices.Contains(cp.Roles, RoleMasterAdmin) {
		cp.Roles = append(slices.Clone(cp.Roles), RoleMasterAdmin)
	}
	cp.Issuer, cp.Subject = "", ""
	if err := a.txn.Insert(TableUsers, &cp); err != nil {
		return nil, err
	}
	if _, err := a.insertToken(c.Refresh); err != nil {
		return nil, err
	}
	if _, err := a.insertToken(c.Access); err != nil {
		return nil, err
	}
	return &cp, a.event("user.recover_admin", "user/admin", "the admin login was recovered with a voter's certificate")
}

// User finds a user by name.
func (v *View) User(name string) (*User, error) {
	raw, err := v.txn.First(TableUsers, "id", name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	return raw.(*User), nil
}

// Users lists every user.
func (v *View) Users() ([]*User, error) { return list[*User](v.txn, TableUsers) }

// Invites lists the open invites.
func (v *View) Invites() ([]*Invite, error) { return list[*Invite](v.txn, TableInvites) }

// InviteByHash finds an open invite by the hash of its code.
func (v *View) InviteByHash(hash string) (*Invite, error) {
	raw, err := v.txn.First(TableInvites, "hash", hash)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("invite code is unknown or was used already: %w", ErrNotFound)
	}
	return raw.(*Invite), nil
}

// User finds a user by name.
func (s *Store) User(name string) (*User, error) { return s.Snapshot().User(name) }

// Users lists every user.
func (s *Store) Users() ([]*User, error) { return s.Snapshot().Users() }
