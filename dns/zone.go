// Package dns is the resolver every node runs. It answers the grid's names
// under kontena.local from an immutable in-memory Zone snapshot (swapped
// atomically by Update, so answering never waits for the control plane and
// keeps the last snapshot while the masters are unreachable) and forwards
// every other name to the host's upstream resolvers.
//
// Names, for grid g, stack s, service v and instance number n:
//
//	v.s.g.kontena.local     the running, healthy instances of v (shuffled per answer)
//	v-n.s.g.kontena.local   instance n of v while it runs (healthy or not)
//	s.g.kontena.local       the healthy instances of the service s exposes
//	s-n.g.kontena.local     instance n of the service s exposes
//	g.kontena.local, kontena.local, and s.g.kontena.local of a stack that
//	                        exposes nothing exist without addresses (NODATA)
//
// Containers get `search s.g.kontena.local g.kontena.local` in resolv.conf,
// so the stub resolver turns `v` and `s` into the names above.
package dns

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultDomain is the zone the resolver is authoritative for.
const DefaultDomain = "kontena.local"

// Record is one running instance of a service as the grid state sees it.
// Only running instances are passed to Update; Healthy says whether the
// instance passes its health check (an instance without a health check is
// healthy while it runs).
type Record struct {
	Grid     string
	Stack    string
	Service  string
	Instance int // 1-based instance number; <= 0: no <svc>-<n> name
	IP       netip.Addr
	Healthy  bool
}

// ExposeKey is the key of the exposes map given to Update and BuildZone:
// exposes[ExposeKey(grid, stack)] = the name of the service the stack exposes.
func ExposeKey(grid, stack string) string { return grid + "/" + stack }

const (
	typeA    = 1
	typeSOA  = 6
	typeAAAA = 28
	typeOPT  = 41
	typeANY  = 255
	classIN  = 1

	rrLenA    = 16 // ptr(2) type(2) class(2) ttl(4) rdlen(2) IPv4(4)
	rrLenAAAA = 28 // ... IPv6(16)
)

// Zone is an immutable snapshot of the names under the domain. Build it with
// BuildZone; never modify it afterwards (the resolver reads it from many
// goroutines without locks).
type Zone struct {
	origin  []byte            // lowercase wire form of the domain, e.g. "\x07kontena\x05local\x00"
	names   map[string]*entry // lowercase wire-form FQDN -> answers
	ttl     uint32            // TTL of A/AAAA answers (baked into the entries)
	negTTL  uint32            // SOA TTL and MINIMUM (negative caching)
	serial  uint32
	udpSize uint16 // EDNS payload size we advertise and accept at most
	// stats
	records, skipped int
}

// entry holds the packed answer records of one name. Every RR starts with a
// compression pointer to offset 12 (the question name), so the bytes can be
// copied behind any question for that name.
type entry struct {
	a    []byte // n * rrLenA
	aaaa []byte // n * rrLenAAAA
	apex bool
}

// ZoneOptions are the parameters of a zone that do not come from the grid state.
type ZoneOptions struct {
	Domain      string // DefaultDomain if empty
	TTL         uint32 // TTL of A/AAAA answers in seconds
	NegativeTTL uint32 // SOA TTL/MINIMUM in seconds (NXDOMAIN/NODATA caching)
	Serial      uint32
	MaxUDPSize  uint16 // 1232 if 0
}

// Names returns the number of names in the zone (including the apex and the
// names without addresses).
func (z *Zone) Names() int { return len(z.names) }

// Serial is the SOA serial of the snapshot.
func (z *Zone) Serial() uint32 { return z.serial }

// Skipped is the number of records BuildZone ignored (invalid names or IPs).
func (z *Zone) Skipped() int { return z.skipped }

// BuildZone turns the grid's running instances into a zone snapshot. Records
// with names that are not valid DNS labels or without an IP are skipped
// (counted in Skipped). exposes maps ExposeKey(grid, stack) to the exposed
// service's name. Names compare case-insensitively.
//
// When an instance alias collides with a real name (a service called "web-1"
// next to instance 1 of "web", or a stack "app-2" next to instance 2 of the
// service stack "app" exposes), the real name wins.
func BuildZone(records []Record, exposes map[string]string, opt ZoneOptions) (*Zone, error) {
	domain := strings.TrimSuffix(strings.ToLower(opt.Domain), ".")
	if domain == "" {
		domain = DefaultDomain
	}
	origin, err := wireName(strings.Split(domain, ".")...)
	if err != nil {
		return nil, fmt.Errorf("dns: domain %q: %w", opt.Domain, err)
	}
	udpSize := opt.MaxUDPSize
	if udpSize == 0 {
		udpSize = 1232
	}
	if udpSize < 512 {
		udpSize = 512
	}
	z := &Zone{origin: origin, ttl: opt.TTL, negTTL: opt.NegativeTTL, serial: opt.Serial, udpSize: udpSize}

	exp := make(map[string]string, len(exposes))
	for k, v := range exposes {
		exp[strings.ToLower(k)] = strings.ToLower(v)
	}

	primary := newNameSet() // real names (and names that exist without data)
	alias := newNameSet()   // <svc>-<n> and <stack>-<n>
	var (
		buf          = make([]byte, 0, 256)
		num          [20]byte
		lastG, lastS string
		exposed      string
		hasExpose    bool
	)
	// name appends the labels (lowercase, valid) and the origin to buf[:0];
	// inst > 0 appends "-<inst>" to the first label.
	name := func(inst []byte, labels ...string) []byte {
		buf = buf[:0]
		for i, l := range labels {
			if i == 0 && len(inst) > 0 {
				buf = append(buf, byte(len(l)+1+len(inst)))
				buf = append(append(append(buf, l...), '-'), inst...)
				continue
			}
			buf = append(append(buf, byte(len(l))), l...)
		}
		return append(buf, origin...)
	}

	for _, r := range records {
		g, s, v := strings.ToLower(r.Grid), strings.ToLower(r.Stack), strings.ToLower(r.Service)
		ip := r.IP.Unmap()
		if !validLabel(g) || !validLabel(s) || !validLabel(v) || !ip.IsValid() || len(g)+len(s)+len(v)+len(origin)+3 > 255 {
			z.skipped++
			continue
		}
		z.records++
		var inst []byte
		if r.Instance > 0 {
			inst = strconv.AppendInt(num[:0], int64(r.Instance), 10)
			if len(v)+1+len(inst) > 63 || len(s)+1+len(inst) > 63 || len(g)+len(s)+len(v)+len(inst)+len(origin)+4 > 255 {
				inst = nil
			}
		}
		if g != lastG || s != lastS {
			lastG, lastS = g, s
			exposed, hasExpose = exp[ExposeKey(g, s)]
		}
		primary.get(name(nil, g))
		primary.get(name(nil, s, g))
		svc := primary.get(name(nil, v, s, g))
		if r.Healthy {
			primary.add(svc, ip)
		}
		if inst != nil {
			alias.add(alias.get(name(inst, v, s, g)), ip)
		}
		if hasExpose && exposed == v {
			if r.Healthy {
				primary.add(primary.get(name(nil, s, g)), ip)
			}
			if inst != nil {
				alias.add(alias.get(name(inst, s, g)), ip)
			}
		}
	}

	z.names = make(map[string]*entry, len(primary.names)+len(alias.names)+1)
	z.names[string(origin)] = &entry{apex: true}
	pack := func(name string, ips []netip.Addr) {
		slices.SortFunc(ips, func(a, b netip.Addr) int { return a.Compare(b) })
		ips = slices.Compact(ips)
		n4 := 0
		for _, ip := range ips {
			if ip.Is4() {
				n4++
			}
		}
		e := &entry{}
		if n4 > 0 {
			e.a = make([]byte, 0, n4*rrLenA)
		}
		if n4 < len(ips) {
			e.aaaa = make([]byte, 0, (len(ips)-n4)*rrLenAAAA)
		}
		for _, ip := range ips {
			if ip.Is4() {
				e.a = appendRR(e.a, typeA, z.ttl, ip.AsSlice())
			} else {
				e.aaaa = appendRR(e.aaaa, typeAAAA, z.ttl, ip.AsSlice())
			}
		}
		z.names[name] = e
	}
	for i, name := range primary.names {
		pack(name, primary.ips[i])
	}
	for i, name := range alias.names {
		if _, taken := primary.idx[name]; !taken {
			pack(name, alias.ips[i])
		}
	}
	return z, nil
}

// nameSet collects names (wire form) and their addresses in insertion order.
type nameSet struct {
	idx   map[string]int
	names []string
	ips   [][]netip.Addr
}

func newNameSet() *nameSet { return &nameSet{idx: map[string]int{}} }

// get returns the index of name, adding it (without addresses) if new.
func (ns *nameSet) get(name []byte) int {
	if i, ok := ns.idx[string(name)]; ok {
		return i
	}
	k := string(name)
	ns.idx[k] = len(ns.names)
	ns.names = append(ns.names, k)
	ns.ips = append(ns.ips, nil)
	return len(ns.names) - 1
}

func (ns *nameSet) add(i int, ip netip.Addr) { ns.ips[i] = append(ns.ips[i], ip) }

func appendRR(b []byte, typ uint16, ttl uint32, rdata []byte) []byte {
	b = append(b, 0xC0, 12)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, classIN)
	b = binary.BigEndian.AppendUint32(b, ttl)
	b = binary.BigEndian.AppendUint16(b, uint16(len(rdata)))
	return append(b, rdata...)
}

// validLabel accepts what Kontena accepts in grid, stack and service names
// (letters, digits, '-', '_'), 1-63 bytes.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// wireName packs labels (lowercased) into uncompressed wire form with the root label.
func wireName(labels ...string) ([]byte, error) {
	var b []byte
	for _, l := range labels {
		if !validLabel(l) {
			return nil, fmt.Errorf("invalid label %q", l)
		}
		b = append(b, byte(len(l)))
		b = append(b, strings.ToLower(l)...)
	}
	b = append(b, 0)
	if len(b) > 255 {
		return nil, fmt.Errorf("name too long")
	}
	return b, nil
}

// presentation turns a wire-form name from a zone key into "a.b.c." (for tests and logs).
func presentation(w string) string {
	var sb strings.Builder
	for i := 0; i < len(w) && w[i] != 0; i += 1 + int(w[i]) {
		sb.WriteString(w[i+1 : i+1+int(w[i])])
		sb.WriteByte('.')
	}
	if sb.Len() == 0 {
		return "."
	}
	return sb.String()
}

// dump lists the zone's names and addresses, sorted (for tests and debugging).
func (z *Zone) dump() []string {
	var out []string
	for k, e := range z.names {
		var ips []string
		for i := 0; i+rrLenA <= len(e.a); i += rrLenA {
			ips = append(ips, netip.AddrFrom4([4]byte(e.a[i+12:i+16])).String())
		}
		for i := 0; i+rrLenAAAA <= len(e.aaaa); i += rrLenAAAA {
			ips = append(ips, netip.AddrFrom16([16]byte(e.aaaa[i+12:i+28])).String())
		}
		out = append(out, presentation(k)+" "+strings.Join(ips, ","))
	}
	slices.SortFunc(out, cmp.Compare)
	return out
}
