package router

import (
	"strconv"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/proxy/model"
)

// FuzzVirtualHost holds the two ways of finding a host's virtual host —
// FindVirtualHost's scan and model.DomainIndex, which the converter builds
// and the router uses — to referenceVirtualHost, Envoy's rules written
// plainly: an exact domain, else the longest "*suffix", else the longest
// "prefix*", else "*"; a wildcard never matches the empty string; domains
// compare ASCII-case-insensitively; on a tie the earlier virtual host wins.
//
// domains is one virtual host per line, its domains separated by commas;
// host is what the client sent, normalized as Find does (NormalizeHost)
// for the two, by refNormalizeHost for the reference.
func FuzzVirtualHost(f *testing.F) {
	const mesh = "reviews,reviews.*\nratings,ratings.*\n*.example.com\n*.shop.example.com\napi.*\napi.internal.*\n*-canary.example.com\n*"
	for _, host := range []string{
		"reviews", "Reviews:9080", "reviews.default.svc", "www.example.com", "a.shop.example.com",
		"example.com", "api.internal.local", "api.", "x-canary.example.com", "[::1]:80", "", ":80", "unknown",
		"ſ.example.com", "\u212aube", "REVIEWS.*", "a\xffb",
	} {
		f.Add(mesh, host)
	}
	f.Add("s.example\n*.example", "ſ.example")
	f.Add("*ab\n*b,a*\nab", "ab")
	f.Add("\xff*\n*", "\xfe")
	f.Fuzz(func(t *testing.T, domains, host string) {
		lines := strings.Split(domains, "\n")
		if len(lines) > 64 {
			return // a few map reads or a scan either way; keep runs quick
		}
		vhs := make([]*model.VirtualHost, len(lines))
		for i, l := range lines {
			vhs[i] = &model.VirtualHost{Name: strconv.Itoa(i), Domains: strings.Split(l, ",")}
		}
		h := NormalizeHost(host)
		want := referenceVirtualHost(vhs, refNormalizeHost(host))
		if got := FindVirtualHost(vhs, h); got != want {
			t.Errorf("FindVirtualHost(%q) = %s, want %s", h, vhName(got), vhName(want))
		}
		if got := model.NewDomainIndex(vhs).Lookup(h); got != want {
			t.Errorf("DomainIndex.Lookup(%q) = %s, want %s", h, vhName(got), vhName(want))
		}
	})
}

func vhName(vh *model.VirtualHost) string {
	if vh == nil {
		return "none"
	}
	return "vhost " + vh.Name + " " + strconv.Quote(strings.Join(vh.Domains, ","))
}

// referenceVirtualHost is Envoy's domain matching (route_config.proto,
// VirtualHost.domains), the slow and obvious way.
func referenceVirtualHost(vhs []*model.VirtualHost, host string) *model.VirtualHost {
	var best *model.VirtualHost
	bestRank, bestLen := 0, -1 // rank: 4 exact, 3 suffix, 2 prefix, 1 "*"
	for _, vh := range vhs {
		for _, d := range vh.Domains {
			rank, n := 0, 0
			switch {
			case d == "*":
				rank = 1
			case strings.HasPrefix(d, "*"):
				if s := d[1:]; len(host) > len(s) && asciiEqualFold(host[len(host)-len(s):], s) {
					rank, n = 3, len(s)
				}
			case strings.HasSuffix(d, "*"):
				if p := d[:len(d)-1]; len(host) > len(p) && asciiEqualFold(host[:len(p)], p) {
					rank, n = 2, len(p)
				}
			case asciiEqualFold(d, host):
				rank = 4
			}
			if rank > bestRank || rank == bestRank && rank > 0 && n > bestLen {
				best, bestRank, bestLen = vh, rank, n
			}
		}
	}
	return best
}

// refNormalizeHost drops a port (the last colon after the "]" of an IPv6
// literal, else the only colon) and lower-cases A-Z, nothing else.
func refNormalizeHost(host string) string {
	if strings.HasPrefix(host, "[") {
		if i, j := strings.LastIndex(host, ":"), strings.LastIndex(host, "]"); j >= 0 && i > j {
			host = host[:i]
		}
	} else if strings.Count(host, ":") == 1 {
		host, _, _ = strings.Cut(host, ":")
	}
	b := []byte(host)
	for i := range b {
		b[i] = lower(b[i])
	}
	return string(b)
}

// asciiEqualFold compares as HTTP compares host names: A-Z and a-z are
// the same letters, every other byte only itself.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
