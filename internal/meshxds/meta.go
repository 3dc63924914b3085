package meshxds

import (
	"math"
	"net"
	"strconv"

	"google.golang.org/protobuf/types/known/structpb"
)

// ReadPort reads a MetaPort value, which bootstrap files and flag-built
// metadata write as a number or as a string. ok is false for anything but
// an integer in 0..65535.
func ReadPort(v *structpb.Value) (port int, ok bool) {
	var p float64
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		p = k.NumberValue
	case *structpb.Value_StringValue:
		n, err := strconv.Atoi(k.StringValue)
		if err != nil {
			return 0, false
		}
		p = float64(n)
	default:
		return 0, false
	}
	if p < 0 || p > math.MaxUint16 || p != math.Trunc(p) {
		return 0, false
	}
	return int(p), true
}

// AddressOr is the address a node announced (MetaAddress) or, when it
// announced none, the IP it connected from: a sidecar that does not know
// its own IP is reachable where it connected from.
func AddressOr(announced, peerAddr string) string {
	if announced != "" || peerAddr == "" {
		return announced
	}
	if host, _, err := net.SplitHostPort(peerAddr); err == nil {
		return host
	}
	return announced
}
