package proxy

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"trellis.dev/trellis/internal/proxy/xdsclient"
)

// configSource is what the proxy needs of its xDS client.
type configSource interface {
	Run(ctx context.Context) error
	Status() xdsclient.Status
}

var _ configSource = (*xdsclient.Client)(nil)

// nodeInfo is what the xDS client is built from.
type nodeInfo struct {
	ID   string
	Node *corev3.Node
}

func (p *Proxy) newXDSClient(n nodeInfo) configSource {
	return xdsclient.New(xdsclient.Config{
		Addr:     p.cfg.ControlAddr,
		Node:     n.Node,
		Logger:   p.cfg.Logger.With("node", p.nodeID),
		OnUpdate: p.setSnapshot,
		// Checked by withDefaults; always set.
		MaxRecvBytes: p.cfg.XDSMaxRecvBytes,
	})
}

// xdsStatus is the client's status, zero before Start.
func (p *Proxy) xdsStatus() xdsclient.Status {
	if s := p.source.Load(); s != nil {
		return (*s).Status()
	}
	return xdsclient.Status{}
}
