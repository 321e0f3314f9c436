package api

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Watch long-polls path, a blocking query, and hands every answer to fn
// until ctx ends. While the grid cannot answer it retries every 2 s
// (telling onErr, which may be nil) and fn is simply not called: whoever
// consumes the answers keeps its last one.
func Watch[T any](ctx context.Context, c *Client, path string, onErr func(error), fn func(v *T)) {
	var index uint64
	for ctx.Err() == nil {
		q := ""
		if index > 0 {
			q = fmt.Sprintf("?index=%d&wait=30s", index)
		}
		var v T
		idx, err := c.Do(ctx, http.MethodGet, path+q, nil, &v)
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
		index = idx
		fn(&v)
	}
}
