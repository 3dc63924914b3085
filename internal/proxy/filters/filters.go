// Package filters links every http filter the proxy implements into the
// binary: importing it registers them all (package filter's Register), so
// that listeners naming them convert and build. A new filter is a package
// under this folder and one line here.
package filters

import (
	_ "trellis.dev/trellis/internal/proxy/filters/router" // envoy.filters.http.router, terminal
)
