package dns

import (
	"errors"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpBatch is the batch I/O of x/net's ipv4 and ipv6 PacketConns
// (recvmmsg/sendmmsg on Linux, one message per call elsewhere).
type udpBatch interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

const (
	udpBatchSize = 32
	udpQueryMax  = 4096 // larger queries are dropped (a DNS query is far smaller)
)

// serveUDPBatch is serveUDP for sockets bound to one address: it reads up
// to udpBatchSize queries per system call, answers the zone's from the
// snapshot and sends those answers with one system call.
func (s *Server) serveUDPBatch(l *listener, r rng) {
	defer s.wg.Done()
	var bc udpBatch = ipv4.NewPacketConn(l.udp)
	if l.addr.Addr().Is6() {
		bc = ipv6.NewPacketConn(l.udp)
	}
	in := make([]ipv4.Message, udpBatchSize)
	out := make([]ipv4.Message, udpBatchSize)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpQueryMax)}
		out[i].Buffers = [][]byte{make([]byte, 0, 1500)}
	}
	outBufs := make([][]byte, udpBatchSize)
	for i := range outBufs {
		outBufs[i] = out[i].Buffers[0]
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("udp read", "err", err)
			continue
		}
		z := s.zone.Load()
		k := 0
		for i := 0; i < n; i++ {
			m := &in[i]
			if m.Flags&syscall.MSG_TRUNC != 0 || m.N > udpQueryMax {
				continue
			}
			pkt := m.Buffers[0][:m.N]
			if resp, ok := z.answer(pkt, outBufs[k][:0], false, &r); ok {
				outBufs[k] = resp[:0]
				out[k].Buffers[0] = resp
				out[k].Addr = m.Addr
				k++
				continue
			}
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			p := peer{addr: netip.AddrPortFrom(ua.AddrPort().Addr().Unmap(), uint16(ua.Port))}
			s.slow(append([]byte(nil), pkt...), false, &r, func(b []byte) { l.write(b, p) })
		}
		for off := 0; off < k; {
			w, err := bc.WriteBatch(out[off:k], 0)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				s.log.Debug("udp write", "err", err)
				off++ // skip the message that failed (e.g. unreachable client)
				continue
			}
			off += w
		}
	}
}
