package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/pki"
)

// Client talks to a grid through any of its nodes. When a node does not
// answer it tries the next one, so the CLI keeps working while a master is
// down.
type Client struct {
	addrs []string
	token string
	http  *http.Client

	// consistent: reads ask for ?consistent=true (served by a leader that
	// confirmed it still is one).
	consistent bool

	mu   sync.Mutex
	good int // index of the address that answered last
}

// Consistent makes every read of c linearizable (?consistent=true): the
// leader answers, after confirming with a majority of the voters that it
// still leads. Default reads may be served by any caught-up voter.
func (c *Client) Consistent() *Client {
	cp := &Client{addrs: c.addrs, token: c.token, http: c.http, consistent: true}
	return cp
}

// UnreachableError means no node could be reached at all.
type UnreachableError struct {
	Addrs []string
	Errs  []error
}

func (e *UnreachableError) Error() string {
	parts := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		parts[i] = err.Error()
	}
	return fmt.Sprintf("no node of the grid answered (tried %s): %s", strings.Join(e.Addrs, ", "), strings.Join(parts, "; "))
}

// NewClient returns a client for the nodes at addrs ("host:port" or
// https URLs). caPEM is the grid CA; cert, when set, authenticates the caller
// as a node.
func NewClient(addrs []string, caPEM []byte, token string, cert *tls.Certificate) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no node address configured: run `kontena up` or `kontena grid login`")
	}
	tlsCfg, err := pki.ClientConfig(caPEM, cert)
	if err != nil {
		return nil, err
	}
	return NewClientTLS(addrs, tlsCfg, token), nil
}

// NewClientTLS is NewClient with a ready TLS config.
func NewClientTLS(addrs []string, tlsCfg *tls.Config, token string) *Client {
	tr := &http.Transport{
		TLSClientConfig:     tlsCfg,
		DialContext:         Dialer(1500 * time.Millisecond).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	norm := make([]string, len(addrs))
	for i, a := range addrs {
		norm[i] = BaseURL(a)
	}
	return &Client{addrs: norm, token: token, http: &http.Client{Transport: tr}}
}

// BaseURL turns "host:port" into "https://host:port".
func BaseURL(addr string) string {
	if strings.HasPrefix(addr, "https://") || strings.HasPrefix(addr, "http://") {
		return strings.TrimRight(addr, "/")
	}
	return "https://" + addr
}

// Current is the node URL that answered last.
func (c *Client) Current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[c.good]
}

// Addrs returns the node URLs the client knows.
func (c *Client) Addrs() []string { return append([]string(nil), c.addrs...) }

// Do sends one request and decodes the JSON answer into out. It returns the
// state index the node answered at (for blocking queries).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) (uint64, error) {
	m, err := c.do(ctx, method, path, in, out)
	return m.index, err
}

// meta is what an answer's headers say of it.
type meta struct {
	index uint64 // the state index it was read at (X-Kontena-Index)
	hash  string // its content hash, for watched answers (X-Kontena-Hash)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) (meta, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return meta{}, err
		}
	}
	if c.consistent && method == http.MethodGet {
		if strings.Contains(path, "?") {
			path += "&consistent=true"
		} else {
			path += "?consistent=true"
		}
	}
	c.mu.Lock()
	start := c.good
	c.mu.Unlock()
	unreach := &UnreachableError{}
	for i := range c.addrs {
		k := (start + i) % len(c.addrs)
		resp, err := c.send(ctx, method, c.addrs[k]+path, body)
		if err != nil {
			if ctx.Err() != nil {
				return meta{}, ctx.Err()
			}
			unreach.Addrs = append(unreach.Addrs, c.addrs[k])
			unreach.Errs = append(unreach.Errs, err)
			continue
		}
		c.mu.Lock()
		c.good = k
		c.mu.Unlock()
		return decodeMeta(resp, out)
	}
	return meta{}, unreach
}

func (c *Client) send(ctx context.Context, method, u string, body []byte) (*http.Response, error) {
	// Each try gets its own deadline so one dead node cannot stall the
	// failover to the next. Blocking queries carry their own wait.
	timeout := 30 * time.Second
	if pu, err := url.Parse(u); err == nil && pu.Query().Get("index") != "" {
		timeout = 6 * time.Minute
	} else if err == nil && pu.Query().Get("follow") == "true" {
		timeout = 24 * time.Hour // streams end when the caller stops reading
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", "kontena-cli")
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	// A node that lost touch with the leader answers 503; another node may
	// still reach it, so treat that like an unreachable node.
	if resp.StatusCode == http.StatusServiceUnavailable {
		_, err := decode(resp, nil)
		return nil, err
	}
	return resp, nil
}

// cancelBody releases a request's deadline when its body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func decode(resp *http.Response, out any) (uint64, error) {
	m, err := decodeMeta(resp, out)
	return m.index, err
}

func decodeMeta(resp *http.Response, out any) (meta, error) {
	m := meta{hash: resp.Header.Get(HeaderHash)}
	m.index, _ = strconv.ParseUint(resp.Header.Get(HeaderIndex), 10, 64)
	return m, decodeBody(resp, out)
}

func decodeBody(resp *http.Response, out any) error {
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
			eb.Error.Status = resp.StatusCode
			return eb.Error
		}
		return &Error{Status: resp.StatusCode, Code: CodeInternal, Message: fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(data))}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
	}
	return nil
}

// Stream GETs path and returns the body as it arrives (logs); the caller
// closes it. Errors are decoded like Do's.
func (c *Client) Stream(ctx context.Context, path string) (io.ReadCloser, error) {
	c.mu.Lock()
	start := c.good
	c.mu.Unlock()
	unreach := &UnreachableError{}
	for i := range c.addrs {
		k := (start + i) % len(c.addrs)
		resp, err := c.send(ctx, http.MethodGet, c.addrs[k]+path, nil)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			unreach.Addrs = append(unreach.Addrs, c.addrs[k])
			unreach.Errs = append(unreach.Errs, err)
			continue
		}
		if resp.StatusCode >= 300 {
			_, err := decode(resp, nil)
			return nil, err
		}
		return resp.Body, nil
	}
	return nil, unreach
}

// Nodes lists nodes. With index > 0 it blocks until the node list changes
// past index or wait ends.
func (c *Client) Nodes(ctx context.Context, index uint64, wait time.Duration) ([]*fsm.Node, uint64, error) {
	var out []*fsm.Node
	idx, err := c.Do(ctx, http.MethodGet, "/v1/nodes"+blocking(index, wait), nil, &out)
	return out, idx, err
}

// Node returns one node by name or ID.
func (c *Client) Node(ctx context.Context, name string) (*fsm.Node, error) {
	var out fsm.Node
	_, err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(name), nil, &out)
	return &out, err
}

// UpdateNode changes a node's availability or labels.
func (c *Client) UpdateNode(ctx context.Context, name string, req NodeUpdateRequest) (*fsm.Node, error) {
	var out fsm.Node
	_, err := c.Do(ctx, http.MethodPatch, "/v1/nodes/"+url.PathEscape(name), req, &out)
	return &out, err
}

// RemoveNode forgets an offline node.
func (c *Client) RemoveNode(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(name), nil, nil)
	return err
}

// SetRole promotes (voter) or demotes (worker) a node.
func (c *Client) SetRole(ctx context.Context, name, role string) (*fsm.Node, error) {
	var out fsm.Node
	action := "promote"
	if role == fsm.RoleWorker {
		action = "demote"
	}
	_, err := c.Do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(name)+"/"+action, nil, &out)
	return &out, err
}

// Grid describes the grid.
func (c *Client) Grid(ctx context.Context) (*GridInfo, error) {
	var out GridInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/grid", nil, &out)
	return &out, err
}

// Health tells whether the grid has quorum and all voters.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var out Health
	_, err := c.Do(ctx, http.MethodGet, "/v1/grid/health", nil, &out)
	return &out, err
}

// JoinToken returns the grid join token; rotate replaces it first.
func (c *Client) JoinToken(ctx context.Context, rotate bool) (string, error) {
	var out JoinTokenResponse
	method, path := http.MethodGet, "/v1/grid/token"
	if rotate {
		method, path = http.MethodPost, "/v1/grid/token/rotate"
	}
	_, err := c.Do(ctx, method, path, nil, &out)
	return out.Token, err
}

// Tokens lists the caller's API tokens (all, for admins).
func (c *Client) Tokens(ctx context.Context) ([]*fsm.Token, error) {
	var out []*fsm.Token
	_, err := c.Do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
	return out, err
}

// CreateToken makes an API token for the caller.
func (c *Client) CreateToken(ctx context.Context, req TokenCreateRequest) (*TokenCreateResponse, error) {
	var out TokenCreateResponse
	_, err := c.Do(ctx, http.MethodPost, "/v1/tokens", req, &out)
	return &out, err
}

// RemoveToken revokes an API token.
func (c *Client) RemoveToken(ctx context.Context, id string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
	return err
}

// Login trades an invite code, a refresh token or a single sign-on
// credential for tokens (no token needed).
func (c *Client) Login(ctx context.Context, req LoginRequest) (*LoginResponse, error) {
	var out LoginResponse
	_, err := c.Do(ctx, http.MethodPost, "/v1/login", req, &out)
	return &out, err
}

// StartDeviceLogin starts a single sign-on login for a machine without a
// browser (no token needed).
func (c *Client) StartDeviceLogin(ctx context.Context) (*DeviceLogin, error) {
	var out DeviceLogin
	_, err := c.Do(ctx, http.MethodPost, "/v1/login/device", nil, &out)
	return &out, err
}

// OIDC tells the grid's single sign-on provider (no token needed).
func (c *Client) OIDC(ctx context.Context) (*OIDCInfo, error) {
	var out OIDCInfo
	_, err := c.Do(ctx, http.MethodGet, "/v1/login/oidc", nil, &out)
	return &out, err
}

// Users lists the grid's users.
func (c *Client) Users(ctx context.Context) ([]*fsm.User, error) {
	var out []*fsm.User
	_, err := c.Do(ctx, http.MethodGet, "/v1/users", nil, &out)
	return out, err
}

// User shows one user.
func (c *Client) User(ctx context.Context, name string) (*fsm.User, error) {
	var out fsm.User
	_, err := c.Do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(name), nil, &out)
	return &out, err
}

// RemoveUser removes a user and revokes their tokens.
func (c *Client) RemoveUser(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/v1/users/"+url.PathEscape(name), nil, nil)
	return err
}

// UserRoles changes a user's roles.
func (c *Client) UserRoles(ctx context.Context, name string, req UserRolesRequest) (*fsm.User, error) {
	var out fsm.User
	_, err := c.Do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(name)+"/roles", req, &out)
	return &out, err
}

// Invite invites a user; the answer holds the only copy of the code.
func (c *Client) Invite(ctx context.Context, req InviteRequest) (*InviteResponse, error) {
	var out InviteResponse
	_, err := c.Do(ctx, http.MethodPost, "/v1/invites", req, &out)
	return &out, err
}

// Invites lists the open invites.
func (c *Client) Invites(ctx context.Context) ([]*fsm.Invite, error) {
	var out []*fsm.Invite
	_, err := c.Do(ctx, http.MethodGet, "/v1/invites", nil, &out)
	return out, err
}

// WhoAmI tells who the client is authenticated as.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	var out WhoAmI
	_, err := c.Do(ctx, http.MethodGet, "/v1/whoami", nil, &out)
	return &out, err
}

// Events lists grid events after index since.
func (c *Client) Events(ctx context.Context, since uint64) ([]*fsm.Event, error) {
	var out []*fsm.Event
	_, err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/events?since=%d", since), nil, &out)
	return out, err
}

// Audit lists audit records after index since (admins only).
func (c *Client) Audit(ctx context.Context, since uint64) ([]*fsm.AuditRecord, error) {
	var out []*fsm.AuditRecord
	_, err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/audit?since=%d", since), nil, &out)
	return out, err
}

func blocking(index uint64, wait time.Duration) string {
	if index == 0 {
		return ""
	}
	return fmt.Sprintf("?index=%d&wait=%s", index, wait)
}

// WithToken is a client of the same grid with another token ("": none).
func (c *Client) WithToken(tok string) *Client {
	return &Client{addrs: c.addrs, token: tok, http: c.http, consistent: c.consistent}
}

// At is a client of the same grid, with the same credentials, that asks
// only addr (a command that must reach one node, e.g. each voter).
func (c *Client) At(addr string) *Client {
	return &Client{addrs: []string{BaseURL(addr)}, token: c.token, http: c.http, consistent: c.consistent}
}
