package httpapi

import (
	"net/http"
	"strconv"

	"github.com/kontena-ng/kontena/fsm"
)

func (n *Server) listEvents(w http.ResponseWriter, r *http.Request, p *principal) error {
	return listSince(n, w, r, (*fsm.Store).Events)
}

func (n *Server) listAudit(w http.ResponseWriter, r *http.Request, p *principal) error {
	return listSince(n, w, r, (*fsm.Store).Audit)
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
