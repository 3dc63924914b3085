package xdsclient

import (
	"maps"
	"slices"
	"time"
)

// Status is what the client knows about its control plane, for the
// proxy's admin endpoint and readiness.
type Status struct {
	// Connected is true while an ADS stream is open.
	Connected bool
	// Versions holds the accepted (ACKed) version_info per type URL. It can
	// be ahead of the last published snapshot while Waiting is not empty.
	Versions map[string]string
	// Waiting says what the client waits for before it can publish a
	// snapshot: "LDS" or "CDS" before their first response, "RDS <name>"
	// or "EDS <name>" for resources accepted ones refer to but that have
	// not arrived. Empty once the accepted config is complete.
	Waiting []string
	// LastNACK is the last rejected response, nil if none was.
	LastNACK *NACK
	// LastUpdate is when OnUpdate was last called; zero if never.
	LastUpdate time.Time
	// Reconnects counts ADS streams opened after the first one.
	Reconnects int
	// DroppedEndpoints counts endpoints left out of accepted responses
	// because they did not convert (model.ConvertEndpoints), and
	// LastDropped says why the last one was.
	DroppedEndpoints int
	LastDropped      string
}

// NACK describes one rejected response.
type NACK struct {
	TypeURL string
	Version string // version_info of the rejected response
	Nonce   string // nonce of the rejected response
	Error   string // the error_detail message sent back
	At      time.Time
}

// Status returns a copy of the client's status; safe for concurrent use.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Versions = maps.Clone(s.Versions)
	s.Waiting = slices.Clone(s.Waiting)
	if s.LastNACK != nil {
		n := *s.LastNACK
		s.LastNACK = &n
	}
	return s
}

func (c *Client) updateStatus(f func(*Status)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.status)
}
