package cluster

import (
	"context"
	"time"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/pki"
)

// callNode makes an internal call to node id at addr, with this node's
// certificate, and only if the answering certificate is that node's.
func (n *Node) CallNode(ctx context.Context, id, name, addr, path string, body any) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := api.NewClientTLS([]string{addr}, pki.ForNode(n.clientTLS, id), "")
	if _, err := c.Do(ctx, "POST", path, body, nil); err != nil {
		n.log.Warn("internal call failed", "node", name, "path", path, "err", err)
	}
}
