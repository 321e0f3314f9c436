// Package api is the HTTPS+JSON contract between the CLI and nodes and
// between nodes: request and response types, error codes, and a client
// that fails over between the grid's nodes.
package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/kontena-ng/kontena/fsm"
)

// ProtocolVersion is bumped when nodes of different versions can no longer
// work together; a join from another protocol version is refused.
const ProtocolVersion = 1

// Error codes carried in error bodies; the CLI maps them to exit codes.
const (
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeConflict     = "conflict"
	CodeInvalid      = "invalid"
	CodeUnavailable  = "unavailable"
	CodeJoinRefused  = "join_refused"
	CodeInternal     = "internal"
	// CodePending: not yet (a device login the user has not approved).
	CodePending = "pending"
)

// Error is an error answered by a node.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// IsCode tells whether err is an API error with the given code.
func IsCode(err error, code string) bool {
	var ae *Error
	return errors.As(err, &ae) && ae.Code == code
}

// Errorf builds an Error with an HTTP status chosen from code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Status: StatusOf(code), Code: code, Message: fmt.Sprintf(format, args...)}
}

// StatusOf maps an error code to its HTTP status.
func StatusOf(code string) int {
	switch code {
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden, CodeJoinRefused:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict, CodePending:
		return http.StatusConflict
	case CodeInvalid:
		return http.StatusBadRequest
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// Header names used between nodes and with the CLI.
const (
	HeaderIndex       = "X-Kontena-Index"
	HeaderForwardedBy = "X-Kontena-Forwarded-By"
	HeaderHops        = "X-Kontena-Hops"
	HeaderSourceIP    = "X-Kontena-Source-IP"
	// HeaderHash is the content hash of a watched answer (netmap,
	// assignments). A watcher sends it back as ?hash=: the node then
	// answers only when the answer differs, or when the wait ends.
	HeaderHash = "X-Kontena-Hash"
)

// JoinRequest is what a new node sends with its join token.
type JoinRequest struct {
	Grid       string   `json:"grid"`
	Secret     string   `json:"secret"`
	Protocol   int      `json:"protocol"`
	Version    string   `json:"version"`
	NodeID     string   `json:"node_id"`
	Name       string   `json:"name"`
	PublicKey  string   `json:"public_key"`
	Addr       string   `json:"addr"`
	PublicAddr string   `json:"public_addr,omitempty"`
	APIPort    int      `json:"api_port"`
	RaftPort   int      `json:"raft_port"`
	GossipPort int      `json:"gossip_port"`
	Labels     []string `json:"labels,omitempty"`
}

// JoinResponse gives an accepted node its certificate and the grid's keys.
// Only voters receive the CA key and master key.
type JoinResponse struct {
	Node      fsm.Node   `json:"node"`
	Grid      GridInfo   `json:"grid"`
	CACert    string     `json:"ca_cert"`
	NodeCert  string     `json:"node_cert"`
	GossipKey []byte     `json:"gossip_key"`
	Peers     []string   `json:"peers"`
	VoterKeys *VoterKeys `json:"voter_keys,omitempty"`
}

// VoterKeys are what a node needs to act as master: sign certificates and
// open sealed values.
type VoterKeys struct {
	CAKey     string `json:"ca_key"`
	MasterKey []byte `json:"master_key"`
	// Voters are the IDs of the voters when the keys were handed over:
	// the only nodes the new voter accepts Raft connections from until
	// the leader's first entries give it a configuration.
	Voters []string `json:"voters,omitempty"`
	// Locked: the grid is locked (`kontena grid lock`); the new voter keeps
	// the master key in memory only.
	Locked bool `json:"locked,omitempty"`
	// Generation of MasterKey (see `kontena vault rotate-key`).
	Generation uint64 `json:"generation,omitempty"`
}

// GridInfo describes a grid for `grid show`.
type GridInfo struct {
	Name        string      `json:"name"`
	Subnet      string      `json:"subnet"`
	Supernet    string      `json:"supernet"`
	InitialSize int         `json:"initial_size"`
	CADigest    string      `json:"ca_digest"`
	Leader      string      `json:"leader,omitempty"`
	Nodes       int         `json:"nodes"`
	Voters      []VoterInfo `json:"voters"`
	CreatedAt   time.Time   `json:"created_at"`
	// Overlay lists every node's overlay address and subnet; handshakes
	// are as seen from the node that answered (SeenFrom).
	Overlay  []OverlayNode `json:"overlay"`
	SeenFrom string        `json:"overlay_seen_from,omitempty"`
	VPNPeers int           `json:"vpn_peers"`
	// DefaultAffinity applies to services without affinity of their own.
	DefaultAffinity []string `json:"default_affinity,omitempty"`
	// OfflineGrace, when set, replaces every strategy's grace before the
	// instances of an offline node move.
	OfflineGrace string `json:"offline_grace,omitempty"`
	// Locked: `kontena grid lock` sealed the master key with an unlock key.
	Locked bool `json:"locked,omitempty"`
	// KeyGeneration counts master key rotations.
	KeyGeneration uint64 `json:"key_generation"`
	// AllowHostAccess: developers may install services that can take
	// over their host.
	AllowHostAccess bool `json:"allow_host_access,omitempty"`
	// OIDC is the single sign-on provider, without its client secret.
	OIDC *OIDCSettings `json:"oidc,omitempty"`
}

// UnlockKey is what `grid lock` and `grid unlock-key --rotate` show, once.
type UnlockKey struct {
	Key string `json:"unlock_key"`
}

// UnlockRequest carries the unlock key to one voter (`grid unlock`).
type UnlockRequest struct {
	Key string `json:"unlock_key"`
}

// UnlockResult is one voter's answer to an unlock.
type UnlockResult struct {
	Node     string `json:"node"`
	Unlocked bool   `json:"unlocked"`    // it holds the master key now
	Already  bool   `json:"already"`     // it held it before
	Locked   bool   `json:"grid_locked"` // the grid is locked at all
}

// GridUpdateRequest changes grid settings; nil fields stay as they are.
type GridUpdateRequest struct {
	DefaultAffinity *[]string `json:"default_affinity,omitempty"`
	OfflineGrace    *string   `json:"offline_grace,omitempty"` // Go duration; "0s": the strategies' own
	AllowHostAccess *bool     `json:"allow_host_access,omitempty"`
	// OIDC replaces the single sign-on settings (master_admin only); an
	// empty issuer turns single sign-on off.
	OIDC *OIDCSettings `json:"oidc,omitempty"`
}

// OIDCSettings configure single sign-on with an OpenID provider.
type OIDCSettings struct {
	Issuer       string            `json:"issuer"`
	ClientID     string            `json:"client_id,omitempty"`
	ClientSecret string            `json:"client_secret,omitempty"` // sealed by the leader; never shown
	RoleClaim    string            `json:"role_claim,omitempty"`
	RoleMap      map[string]string `json:"role_map,omitempty"`
	Scopes       []string          `json:"scopes,omitempty"`
}

// OverlayNode is one node's place in the overlay (in `grid show`).
type OverlayNode struct {
	Name          string    `json:"name"`
	Address       string    `json:"address,omitempty"`
	Subnet        string    `json:"subnet,omitempty"`
	Enabled       bool      `json:"enabled"`
	LastHandshake time.Time `json:"last_handshake,omitempty"`
}

// VoterInfo is one Raft voter as the answering node sees it.
type VoterInfo struct {
	Name    string `json:"name"`
	ID      string `json:"id"`
	Addr    string `json:"addr"`
	APIAddr string `json:"api_addr"`
	Status  string `json:"status"`
	Leader  bool   `json:"leader"`
	InRaft  bool   `json:"in_raft"`
	// Filled by `grid health`: how far this voter's state is behind.
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	Lag          uint64 `json:"lag"`
	Reachable    bool   `json:"reachable"`
	Locked       bool   `json:"locked,omitempty"` // waits for `kontena grid unlock`
	// KeyGeneration is the master key generation the voter holds.
	KeyGeneration uint64 `json:"key_generation,omitempty"`
}

// NodeStatus is a node's own view of itself (internal).
type NodeStatus struct {
	Role         string `json:"role"`
	RaftState    string `json:"raft_state,omitempty"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	// Locked: this voter restarted while the grid was locked and has not
	// been given the unlock key: it serves no secrets.
	Locked bool `json:"locked,omitempty"`
	// KeyGeneration is the master key generation this voter holds.
	KeyGeneration uint64 `json:"key_generation,omitempty"`
	// Overlay is the node's WireGuard device and resolver as they run.
	Overlay *OverlayStatus `json:"overlay,omitempty"`
}

// Health levels of `grid health`.
const (
	HealthOK      = "ok"
	HealthWarning = "warning"
	HealthError   = "error"
)

// Health is the answer of `grid health`.
type Health struct {
	Status   string      `json:"status"`
	Leader   string      `json:"leader,omitempty"`
	Voters   []VoterInfo `json:"voters"`
	Quorum   int         `json:"quorum"`
	Messages []string    `json:"messages,omitempty"`
}

// NodeUpdateRequest changes availability and labels of a node.
type NodeUpdateRequest struct {
	Availability string    `json:"availability,omitempty"`
	SetLabels    *[]string `json:"set_labels,omitempty"`
	AddLabels    []string  `json:"add_labels,omitempty"`
	RemoveLabels []string  `json:"remove_labels,omitempty"`
}

// TokenCreateRequest asks for a new API token for the caller.
type TokenCreateRequest struct {
	Description string `json:"description,omitempty"`
	ExpiresIn   string `json:"expires_in,omitempty"` // Go duration; empty: the default (30 days)
	// Role limits the token to one role the caller holds (or one below).
	Role string `json:"role,omitempty"`
}

// LoginRequest logs in with one of: an invite code, a refresh token, an
// authorization code of the grid's OpenID provider (with the PKCE
// verifier and the redirect URI it was given for), or an ID token of
// that provider (with the provider's refresh token, if any).
type LoginRequest struct {
	Code         string `json:"code,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	OIDCCode     string `json:"oidc_code,omitempty"`
	CodeVerifier string `json:"code_verifier,omitempty"`
	RedirectURI  string `json:"redirect_uri,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	IdPRefresh   string `json:"idp_refresh_token,omitempty"`
	// DeviceCode: a device login started with POST /v1/login/device,
	// polled until the user approves it at the provider.
	DeviceCode string `json:"device_code,omitempty"`
}

// DeviceLogin is a started device login: the user opens VerificationURI
// and enters UserCode; the CLI polls with DeviceCode every Interval.
type DeviceLogin struct {
	DeviceCode              string    `json:"device_code"`
	UserCode                string    `json:"user_code"`
	VerificationURI         string    `json:"verification_uri"`
	VerificationURIComplete string    `json:"verification_uri_complete,omitempty"`
	ExpiresAt               time.Time `json:"expires_at"`
	Interval                int       `json:"interval"`
}

// LoginResponse is a login: a short-lived access token and, for
// sessions, the refresh token that gets the next one.
type LoginResponse struct {
	User             fsm.User  `json:"user"`
	AccessToken      string    `json:"access_token"`
	AccessExpiresAt  time.Time `json:"access_expires_at"`
	RefreshToken     string    `json:"refresh_token,omitempty"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at,omitzero"`
}

// OIDCInfo is what a CLI needs to start a single sign-on login.
type OIDCInfo struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
}

// InviteRequest invites a user by email with roles.
type InviteRequest struct {
	Email     string   `json:"email"`
	Roles     []string `json:"roles"`
	Stacks    []string `json:"stacks,omitempty"`
	ExpiresIn string   `json:"expires_in,omitempty"` // default 24h
}

// InviteResponse holds the only copy of an invite code.
type InviteResponse struct {
	Invite fsm.Invite `json:"invite"`
	Code   string     `json:"code"`
}

// UserRolesRequest changes a user's roles and stack patterns.
type UserRolesRequest struct {
	Add    []string  `json:"add,omitempty"`
	Remove []string  `json:"remove,omitempty"`
	Stacks *[]string `json:"stacks,omitempty"`
}

// TokenCreateResponse holds the only copy of a new token's value.
type TokenCreateResponse struct {
	Token fsm.Token `json:"token"`
	Value string    `json:"value"`
}

// JoinTokenResponse is the grid join token.
type JoinTokenResponse struct {
	Token string `json:"token"`
}

// WhoAmI says who the caller is authenticated as.
type WhoAmI struct {
	Grid   string   `json:"grid,omitempty"`
	User   string   `json:"user"`
	Roles  []string `json:"roles"`
	Stacks []string `json:"stacks,omitempty"`
	Token  string   `json:"token,omitempty"`
	Node   string   `json:"node,omitempty"`
}

// CertificateImportRequest brings a certificate of one's own.
type CertificateImportRequest struct {
	CertPEM  string `json:"cert_pem"`
	ChainPEM string `json:"chain_pem,omitempty"`
	KeyPEM   string `json:"key_pem"`
}

// CertificateInfo is a certificate as listed (its chain on show, its key
// only on export).
type CertificateInfo struct {
	Subject   string    `json:"subject"`
	AltNames  []string  `json:"alt_names,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	Source    string    `json:"source,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	CertPEM   string    `json:"cert_pem,omitempty"`
	KeyPEM    string    `json:"key_pem,omitempty"`
}

// ACMERegisterRequest makes the grid's account at an ACME CA.
type ACMERegisterRequest struct {
	Email       string `json:"email"`
	Directory   string `json:"directory,omitempty"`    // default Let's Encrypt
	DirectoryCA string `json:"directory_ca,omitempty"` // PEM, for a private CA
}

// ACMEAccountInfo is the grid's ACME account.
type ACMEAccountInfo struct {
	Directory string `json:"directory"`
	Email     string `json:"email"`
	URI       string `json:"uri"`
}

// CertificateRequest orders a certificate for Domains (the first is the
// subject) with a challenge Type; dns-01 comes back with Order to finish.
type CertificateRequest struct {
	Domains []string `json:"domains"`
	Type    string   `json:"type,omitempty"`
	Order   string   `json:"order,omitempty"`
}

// CertificateResponse is an issued certificate, or the DNS records a
// dns-01 order waits for.
type CertificateResponse struct {
	Certificate *CertificateInfo `json:"certificate,omitempty"`
	Order       string           `json:"order,omitempty"`
	Records     []ACMEDNSRecord  `json:"records,omitempty"`
}

// ACMEDNSRecord is one record to create for a dns-01 challenge.
type ACMEDNSRecord struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}
