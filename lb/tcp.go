package lb

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// tcpListener serves one external port in tcp mode. The route it serves
// is looked up for each connection, so an update changes where new
// connections go while established ones carry on.
type tcpListener struct {
	port int
	ln   net.Listener
	done chan struct{}
}

func (s *Server) serveTCP(ctx context.Context, tl *tcpListener) {
	defer close(tl.done)
	for {
		c, err := tl.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go s.handleTCP(ctx, tl.port, c)
	}
}

func (s *Server) handleTCP(ctx context.Context, port int, c net.Conn) {
	defer c.Close()
	rt := s.table.Load().tcp[port]
	if rt == nil {
		return
	}
	var tried []*backend
	for {
		b := rt.pool.pick(c.RemoteAddr().String(), "", tried)
		if b == nil && len(tried) == 0 {
			b = rt.pool.wait(ctx, c.RemoteAddr().String(), "")
		}
		if b == nil {
			return
		}
		tried = append(tried, b)
		d := net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
		up, err := d.DialContext(ctx, "tcp", b.addr)
		if err != nil {
			s.markDown(b, err.Error())
			continue
		}
		b.active.Add(1)
		b.served.Add(1)
		splice(c, up)
		b.active.Add(-1)
		return
	}
}

// splice copies both ways until both are done; each side's end is passed
// on as a half close where the connection supports it.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	_ = b.Close()
}
