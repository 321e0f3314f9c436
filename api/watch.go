package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Watch long-polls path, a blocking query, and hands every answer to fn
// until ctx ends. While the grid cannot answer it retries every 2 s
// (telling onErr, which may be nil) and fn is simply not called: whoever
// consumes the answers keeps its last one.
//
// It sends back the content hash of the answer it holds (?hash=), so a
// node that knows it (X-Kontena-Hash) answers only when the answer
// changed; an answer with the same hash (the wait ended, or an older node
// answered) is not handed to fn again.
func Watch[T any](ctx context.Context, c *Client, path string, onErr func(error), fn func(v *T)) {
	var (
		index uint64
		hash  string
	)
	for ctx.Err() == nil {
		q := ""
		if index > 0 {
			q = fmt.Sprintf("?index=%d&wait=30s", index)
			if hash != "" {
				q += "&hash=" + url.QueryEscape(hash)
			}
		}
		var v T
		m, err := c.do(ctx, http.MethodGet, path+q, nil, &v)
		if err != nil {
			if onErr != nil {
				onErr(err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			continue
		}
		index = m.index
		if m.hash != "" && m.hash == hash {
			continue
		}
		hash = m.hash
		fn(&v)
	}
}
