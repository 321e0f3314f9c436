package dns

import (
	"bytes"
	"encoding/binary"
)

// Header flag bits.
const (
	flagQR = 0x8000
	flagAA = 0x0400
	flagTC = 0x0200
	flagRD = 0x0100
	flagRA = 0x0080
	flagCD = 0x0010

	rcodeNXDomain = 3

	maxTCPSize = 65535
)

// rng is a splitmix64 generator. Each UDP worker owns one; nothing is shared.
type rng uint64

func (r *rng) next() uint64 {
	*r += 0x9e3779b97f4a7c15
	z := uint64(*r)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a number in [0, n) (n < 2^32; the bias is irrelevant here).
func (r *rng) intn(n int) int { return int((r.next() >> 32) * uint64(n) >> 32) }

// answer builds, into out[:0], the response to the raw query pkt if it is a
// plain query for a name in the zone: one question of class IN, no answer or
// authority records, at most an EDNS(0) OPT record. Anything else (names
// outside the zone, other opcodes, EDNS versions, TSIG, compression in the
// question, malformed packets) returns ok=false and goes to the slow path.
// It does not allocate when out has room for the response.
//
// Over UDP (tcp=false) the response is cut to 512 bytes, or to the client's
// EDNS payload size capped at the zone's, keeping whole records (a random
// subset of them, since they are shuffled first) and setting TC.
func (z *Zone) answer(pkt, out []byte, tcp bool, r *rng) (_ []byte, ok bool) {
	if len(pkt) < 12 {
		return nil, false
	}
	flags := binary.BigEndian.Uint16(pkt[2:])
	if flags&flagQR != 0 || (flags>>11)&0xF != 0 {
		return nil, false
	}
	if binary.BigEndian.Uint16(pkt[4:]) != 1 || binary.BigEndian.Uint16(pkt[6:]) != 0 ||
		binary.BigEndian.Uint16(pkt[8:]) != 0 {
		return nil, false
	}
	ar := binary.BigEndian.Uint16(pkt[10:])
	if ar > 1 {
		return nil, false
	}

	// Question name, lowercased into kb (wire form; length bytes are <= 63,
	// below 'A', so lowercasing the whole buffer is safe).
	var kb [255]byte
	n, i := 0, 12
	for {
		if i >= len(pkt) {
			return nil, false
		}
		l := int(pkt[i])
		if l == 0 {
			if n >= len(kb) {
				return nil, false
			}
			kb[n] = 0
			n++
			i++
			break
		}
		if l > 63 || i+1+l > len(pkt) || n+1+l >= len(kb) {
			return nil, false // pointer, extended label, truncated, too long
		}
		kb[n] = byte(l)
		for j := 1; j <= l; j++ {
			c := pkt[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			kb[n+j] = c
		}
		n += 1 + l
		i += 1 + l
	}
	if i+4 > len(pkt) {
		return nil, false
	}
	qtype := binary.BigEndian.Uint16(pkt[i:])
	if binary.BigEndian.Uint16(pkt[i+2:]) != classIN {
		return nil, false
	}
	qend := i + 4

	edns, do := false, uint16(0)
	max := 512
	if ar == 1 {
		j := qend
		if j+11 > len(pkt) || pkt[j] != 0 || binary.BigEndian.Uint16(pkt[j+1:]) != typeOPT || pkt[j+6] != 0 {
			return nil, false // not OPT (e.g. TSIG), or EDNS version > 0
		}
		if j+11+int(binary.BigEndian.Uint16(pkt[j+9:])) != len(pkt) {
			return nil, false
		}
		edns = true
		do = binary.BigEndian.Uint16(pkt[j+7:]) & 0x8000
		if sz := int(binary.BigEndian.Uint16(pkt[j+3:])); sz > max {
			max = min(sz, int(z.udpSize))
		}
	}
	if tcp {
		max = maxTCPSize
	}

	// In the zone: the name ends with the origin at a label boundary.
	key, ol := kb[:n], len(z.origin)
	if n < ol || !bytes.Equal(key[n-ol:], z.origin) {
		return nil, false
	}
	p := 0
	for p < n-ol {
		p += 1 + int(key[p])
	}
	if p != n-ol {
		return nil, false
	}
	originPtr := 12 + n - ol // where the origin starts inside the question name

	e := z.names[string(key)]
	var rrA, rrAAAA []byte
	soaAnswer := false
	rcode := uint16(0)
	if e == nil {
		rcode = rcodeNXDomain
	} else {
		switch qtype {
		case typeA:
			rrA = e.a
		case typeAAAA:
			rrAAAA = e.aaaa
		case typeANY:
			rrA, rrAAAA = e.a, e.aaaa
			soaAnswer = e.apex
		case typeSOA:
			soaAnswer = e.apex
		}
	}

	out = append(out[:0], pkt[0], pkt[1])
	out = binary.BigEndian.AppendUint16(out, flagQR|flagAA|flagRA|flags&(flagRD|flagCD)|rcode)
	out = append(out, 0, 1, 0, 0, 0, 0, 0, 0) // counts, set below
	out = append(out, pkt[12:qend]...)
	optLen := 0
	if edns {
		optLen = 11
	}
	room := max - len(out) - optLen
	an, ns := 0, 0
	tc := false
	if len(rrA)+len(rrAAAA) > 0 {
		nA, nAAAA := len(rrA)/rrLenA, len(rrAAAA)/rrLenAAAA
		fitA := min(nA, room/rrLenA)
		fitAAAA := min(nAAAA, (room-fitA*rrLenA)/rrLenAAAA)
		tc = fitA < nA || fitAAAA < nAAAA
		out = appendShuffled(out, rrA, rrLenA, fitA, r)
		out = appendShuffled(out, rrAAAA, rrLenAAAA, fitAAAA, r)
		an = fitA + fitAAAA
	} else {
		out = z.appendSOA(out, originPtr)
		if soaAnswer {
			an = 1
		} else {
			ns = 1
		}
	}
	if edns {
		out = append(out, 0, 0, typeOPT)
		out = binary.BigEndian.AppendUint16(out, z.udpSize)
		out = append(out, 0, 0) // extended rcode, version
		out = binary.BigEndian.AppendUint16(out, do)
		out = append(out, 0, 0) // no options
	}
	if tc {
		out[2] |= flagTC >> 8
	}
	binary.BigEndian.PutUint16(out[6:], uint16(an))
	binary.BigEndian.PutUint16(out[8:], uint16(ns))
	if edns {
		out[11] = 1
	}
	return out, true
}

// appendShuffled appends k of the fixed-size records in rrs (n = len/size),
// picked and ordered at random (a partial Fisher-Yates on the copy).
func appendShuffled(out, rrs []byte, size, k int, r *rng) []byte {
	if k <= 0 {
		return out
	}
	n := len(rrs) / size
	start := len(out)
	out = append(out, rrs...)
	b := out[start:]
	var tmp [rrLenAAAA]byte
	for i := 0; i < k && i < n-1; i++ {
		j := i + r.intn(n-i)
		if j != i {
			copy(tmp[:size], b[i*size:(i+1)*size])
			copy(b[i*size:(i+1)*size], b[j*size:(j+1)*size])
			copy(b[j*size:(j+1)*size], tmp[:size])
		}
	}
	return out[:start+k*size]
}

// appendSOA appends the zone's SOA record; its owner, MNAME (ns.<origin>) and
// RNAME (hostmaster.<origin>) point at the origin inside the question name.
func (z *Zone) appendSOA(out []byte, originPtr int) []byte {
	ptr := uint16(0xC000 | originPtr)
	out = binary.BigEndian.AppendUint16(out, ptr)
	out = append(out, 0, typeSOA, 0, classIN)
	out = binary.BigEndian.AppendUint32(out, z.negTTL)
	out = append(out, 0, 5+13+20)
	out = append(out, 2, 'n', 's')
	out = binary.BigEndian.AppendUint16(out, ptr)
	out = append(out, 10, 'h', 'o', 's', 't', 'm', 'a', 's', 't', 'e', 'r')
	out = binary.BigEndian.AppendUint16(out, ptr)
	out = binary.BigEndian.AppendUint32(out, z.serial)
	out = binary.BigEndian.AppendUint32(out, 3600)  // refresh
	out = binary.BigEndian.AppendUint32(out, 600)   // retry
	out = binary.BigEndian.AppendUint32(out, 86400) // expire
	return binary.BigEndian.AppendUint32(out, z.negTTL)
}
