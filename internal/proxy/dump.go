package proxy

import (
	"time"

	"trellis.dev/trellis/internal/membership"
	"trellis.dev/trellis/internal/proxy/health"
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/outlier"
)

// configDump is what /config_dump shows.
type configDump struct {
	Node      string            `json:"node"`
	Role      string            `json:"role"`
	Service   string            `json:"service,omitempty"`
	Version   string            `json:"version,omitempty"`
	Zone      string            `json:"zone,omitempty"`
	Listeners map[string]string `json:"listeners"` // name → bound address
	Ready     bool              `json:"ready"`
	NotReady  string            `json:"notReady,omitempty"`
	XDS       xdsDump           `json:"xds"`
	// Membership: whether the app is ready and the instance registered
	// (sidecars with an app only).
	Membership *membership.Status `json:"membership,omitempty"`
	Snapshot   *model.Snapshot    `json:"snapshot"`
	// Ejected lists the endpoints outlier detection ejected now, per
	// cluster.
	Ejected map[string][]outlier.Ejected `json:"ejected,omitempty"`
	// HealthChecks lists the endpoints of every cluster with an active
	// health check and their state.
	HealthChecks map[string][]health.Status `json:"healthChecks,omitempty"`
}

type xdsDump struct {
	ControlAddr string            `json:"controlAddr"`
	Connected   bool              `json:"connected"`
	Versions    map[string]string `json:"versions,omitempty"`
	Waiting     []string          `json:"waiting,omitempty"` // resources referred to, not arrived yet
	LastUpdate  time.Time         `json:"lastUpdate,omitzero"`
	Reconnects  int               `json:"reconnects"`
	LastNACK    *nackDump         `json:"lastNack,omitempty"`
	// DroppedEndpoints counts endpoints left out because they did not
	// convert; LastDropped says why the last one was.
	DroppedEndpoints int    `json:"droppedEndpoints"`
	LastDropped      string `json:"lastDropped,omitempty"`
}

type nackDump struct {
	TypeURL string    `json:"typeUrl"`
	Version string    `json:"version"`
	Nonce   string    `json:"nonce"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// adminSource shows the proxy on its admin listener.
type adminSource struct{ p *Proxy }

func (a adminSource) Ready() (bool, string) { return a.p.readiness() }
func (a adminSource) ConfigDump() any       { return a.p.configDump() }

func (p *Proxy) configDump() configDump {
	ready, why := p.readiness()
	st := p.xdsStatus()
	d := configDump{
		Node:      p.nodeID,
		Role:      p.cfg.Role,
		Service:   p.cfg.Service,
		Version:   p.cfg.Version,
		Zone:      p.cfg.Zone,
		Listeners: map[string]string{},
		Ready:     ready,
		NotReady:  why,
		XDS: xdsDump{
			ControlAddr:      p.cfg.ControlAddr,
			Connected:        st.Connected,
			Versions:         st.Versions,
			Waiting:          st.Waiting,
			LastUpdate:       st.LastUpdate,
			Reconnects:       st.Reconnects,
			DroppedEndpoints: st.DroppedEndpoints,
			LastDropped:      st.LastDropped,
		},
		Snapshot:     p.snapshot.Load(),
		Ejected:      p.outliers.Ejected(),
		HealthChecks: p.health.Status(),
	}
	if n := st.LastNACK; n != nil {
		d.XDS.LastNACK = &nackDump{TypeURL: n.TypeURL, Version: n.Version, Nonce: n.Nonce, Error: n.Error, At: n.At}
	}
	if ms, ok := p.membershipStatus(); ok {
		d.Membership = &ms
	}
	p.mu.Lock()
	for _, l := range p.listeners {
		d.Listeners[l.name] = l.ln.Addr().String()
	}
	d.Listeners["admin"] = p.adminAddr
	p.mu.Unlock()
	return d
}
