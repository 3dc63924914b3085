package router

import (
	"strings"

	"trellis.dev/trellis/internal/proxy/model"
)

// FindVirtualHost picks the virtual host for a normalized host as Envoy
// does: an exact domain first, then the longest suffix wildcard ("*.x" or
// "*-x"), then the longest prefix wildcard ("x.*"), then "*". A wildcard
// never matches the empty string. Domains compare ASCII-case-insensitively
// (model.EqualFoldASCII: strings.EqualFold's Unicode folding would match
// "ſ" with "s", which model.DomainIndex and Envoy do not). On a tie the
// earlier virtual host wins.
func FindVirtualHost(vhosts []*model.VirtualHost, host string) *model.VirtualHost {
	var (
		suffix, prefix, any  *model.VirtualHost
		suffixLen, prefixLen int
	)
	for _, vh := range vhosts {
		for _, d := range vh.Domains {
			switch {
			case d == "*":
				if any == nil {
					any = vh
				}
			case strings.HasPrefix(d, "*"):
				s := d[1:]
				if len(s) > suffixLen && len(host) > len(s) && model.EqualFoldASCII(host[len(host)-len(s):], s) {
					suffix, suffixLen = vh, len(s)
				}
			case strings.HasSuffix(d, "*"):
				p := d[:len(d)-1]
				if len(p) > prefixLen && len(host) > len(p) && model.EqualFoldASCII(host[:len(p)], p) {
					prefix, prefixLen = vh, len(p)
				}
			default:
				if model.EqualFoldASCII(d, host) {
					return vh // exact beats every wildcard
				}
			}
		}
	}
	switch {
	case suffix != nil:
		return suffix
	case prefix != nil:
		return prefix
	default:
		return any
	}
}
