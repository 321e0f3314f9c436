package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kontena-ng/kontena/api"

	"github.com/kontena-ng/kontena/fsm"
)

func (n *Server) listEvents(w http.ResponseWriter, r *http.Request, p *principal) error {
	return listSince(n, w, r, (*fsm.Store).Events)
}

// listAudit answers audit records after ?since=N (an index), filtered by
// ?user=, ?resource= (a kind such as stack, or a resource such as
// stack/web) and ?after= (RFC 3339 time).
func (n *Server) listAudit(w http.ResponseWriter, r *http.Request, p *principal) error {
	f, err := auditFilterOf(r.URL.Query())
	if err != nil {
		return err
	}
	return listSince(n, w, r, func(s *fsm.Store, since uint64) ([]*fsm.AuditRecord, error) {
		recs, err := s.Audit(since)
		if err != nil {
			return nil, err
		}
		return slices.DeleteFunc(recs, func(a *fsm.AuditRecord) bool { return !f.match(a) }), nil
	})
}

// auditFilter selects audit records.
type auditFilter struct {
	user, resource string
	after          time.Time
}

func auditFilterOf(q url.Values) (auditFilter, error) {
	f := auditFilter{user: q.Get("user"), resource: q.Get("resource")}
	if s := q.Get("after"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return f, api.Errorf(api.CodeInvalid, "after=%q: expected an RFC 3339 time such as 2026-12-07T10:00:00Z", s)
		}
		f.after = t
	}
	return f, nil
}

func (f auditFilter) match(a *fsm.AuditRecord) bool {
	switch {
	case f.user != "" && a.User != f.user:
		return false
	case !f.after.IsZero() && a.Time.Before(f.after):
		return false
	case f.resource != "" && a.Resource != f.resource && !strings.HasPrefix(a.Resource, f.resource+"/"):
		return false
	}
	return true
}

// resourceOfPath names what an API path acts on as audit records do:
// /v1/stacks/web/deploy is stack/web/deploy.
func resourceOfPath(path string) string {
	rest := strings.TrimPrefix(path, "/v1/")
	kind, tail, _ := strings.Cut(rest, "/")
	kind = strings.TrimSuffix(kind, "s")
	if tail == "" {
		return kind
	}
	return kind + "/" + tail
}

// listSince answers the records a log-like table holds after ?since=N.
func listSince[T any](n *Server, w http.ResponseWriter, r *http.Request, get func(*fsm.Store, uint64) ([]T, error)) error {
	store, err := n.store()
	if err != nil {
		return err
	}
	since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
	recs, err := get(store, since)
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []T{}
	}
	return writeJSON(w, store.Index(), recs)
}
