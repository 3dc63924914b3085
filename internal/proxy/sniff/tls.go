package sniff

// A hand parser, not crypto/tls: sniffing needs a three-state answer on a
// prefix (crypto/tls only parses a whole message, and only by running a
// server handshake over a net.Conn), must not allocate or run a handshake
// state machine per connection, and reads only the two fields it needs.
// crypto/tls is the oracle in FuzzClientHello: whenever it parses a
// ClientHello that this parser parses too, both give the same SNI and ALPN.

const (
	recordHeaderLen    = 5
	recordTypeHS       = 0x16
	handshakeHeaderLen = 4
	typeClientHello    = 1
	maxPlaintext       = 1 << 14 // RFC 8446 §5.1

	extServerName = 0
	extALPN       = 16
	hostNameType  = 0
)

// SniffTLS recognises the first record of a TLS connection: a handshake
// record (SSL 3.0 to TLS 1.3 record versions) holding a ClientHello.
func SniffTLS(b []byte) Verdict {
	// 16 03 0x LL LL 01: record type, version 3.x, length, handshake type.
	switch {
	case len(b) < 1:
		return NeedMore
	case b[0] != recordTypeHS:
		return NoMatch
	case len(b) < 2:
		return NeedMore
	case b[1] != 3:
		return NoMatch
	case len(b) < 3:
		return NeedMore
	case b[2] > 4:
		return NoMatch
	case len(b) < 5:
		return NeedMore
	}
	if n := int(b[3])<<8 | int(b[4]); n == 0 || n > maxPlaintext {
		return NoMatch
	}
	switch {
	case len(b) < 6:
		return NeedMore
	case b[5] != typeClientHello:
		return NoMatch
	}
	return Match
}

// ClientHello holds what the mesh reads from a ClientHello.
type ClientHello struct {
	ServerName string   // the first host_name of server_name, if any
	ALPN       []string // application_layer_protocol_negotiation, in order
}

// ParseClientHello parses the ClientHello that starts b (a TLS record, as
// SniffTLS matches). It reads only the first record: ok is false when the
// message is not whole in it or is malformed.
func ParseClientHello(b []byte) (h ClientHello, ok bool) {
	if SniffTLS(b) != Match {
		return h, false
	}
	rec := b[recordHeaderLen:]
	if n := int(b[3])<<8 | int(b[4]); n < len(rec) {
		rec = rec[:n]
	}
	if len(rec) < handshakeHeaderLen {
		return h, false
	}
	n := int(rec[1])<<16 | int(rec[2])<<8 | int(rec[3])
	if len(rec)-handshakeHeaderLen < n {
		return h, false // spans records, or not all here
	}
	s := reader(rec[handshakeHeaderLen : handshakeHeaderLen+n])
	var sid, suites, comp, exts reader
	if !s.skip(2+32) || // legacy_version, random
		!s.vec8(&sid) || !s.vec16(&suites) || !s.vec8(&comp) {
		return h, false
	}
	if len(s) == 0 {
		return h, true // no extensions
	}
	if !s.vec16(&exts) || len(s) != 0 {
		return h, false
	}
	for len(exts) > 0 {
		var typ uint16
		var data reader
		if !exts.u16(&typ) || !exts.vec16(&data) {
			return h, false
		}
		switch typ {
		case extServerName:
			var list reader
			if !data.vec16(&list) {
				return h, false
			}
			for len(list) > 0 {
				var nameType uint8
				var name reader
				if !list.u8(&nameType) || !list.vec16(&name) {
					return h, false
				}
				if nameType == hostNameType && h.ServerName == "" {
					h.ServerName = string(name)
				}
			}
		case extALPN:
			var list reader
			if !data.vec16(&list) {
				return h, false
			}
			for len(list) > 0 {
				var proto reader
				if !list.vec8(&proto) {
					return h, false
				}
				h.ALPN = append(h.ALPN, string(proto))
			}
		}
	}
	return h, true
}

// reader reads big-endian TLS vectors off the front of a byte slice; every
// method reports false, and reads nothing, when the slice is too short.
type reader []byte

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) u8(v *uint8) bool {
	if len(*r) < 1 {
		return false
	}
	*v = (*r)[0]
	*r = (*r)[1:]
	return true
}

func (r *reader) u16(v *uint16) bool {
	if len(*r) < 2 {
		return false
	}
	*v = uint16((*r)[0])<<8 | uint16((*r)[1])
	*r = (*r)[2:]
	return true
}

func (r *reader) vec(lenBytes int, out *reader) bool {
	if len(*r) < lenBytes {
		return false
	}
	n := 0
	for _, c := range (*r)[:lenBytes] {
		n = n<<8 | int(c)
	}
	if len(*r)-lenBytes < n {
		return false
	}
	*out = (*r)[lenBytes : lenBytes+n]
	*r = (*r)[lenBytes+n:]
	return true
}

func (r *reader) vec8(out *reader) bool  { return r.vec(1, out) }
func (r *reader) vec16(out *reader) bool { return r.vec(2, out) }
