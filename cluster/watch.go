package cluster

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/kontena-ng/kontena/api"
)

// watchSelf long-polls path, a blocking query on the node's own API (a
// worker forwards it to a voter), and hands every answer to fn until ctx
// ends. While the grid cannot answer it retries every 2 s and fn is simply
// not called: whoever consumes the answers keeps its last one.
func watchSelf[T any](ctx context.Context, n *Node, self *api.Client, path, what string, fn func(v *T)) {
	var index uint64
	for ctx.Err() == nil {
		q := ""
		if index > 0 {
			q = fmt.Sprintf("?index=%d&wait=30s", index)
		}
		var v T
		idx, err := self.Do(ctx, http.MethodGet, path+q, nil, &v)
		if err != nil {
			n.log.Debug("watch "+what, "err", err)
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
