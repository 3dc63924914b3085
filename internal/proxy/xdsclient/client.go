// Package xdsclient is the proxy's ADS client (state of the world): it
// subscribes to CDS, LDS, EDS and RDS over one stream, checks every
// response by converting it to the proxy's model, ACKs or NACKs it, and
// hands each new complete snapshot to the data plane.
//
// The last good configuration is never dropped: not on a NACK, not when
// the control plane goes away. The client reconnects with backoff and
// resubscribes with the versions it has.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/proxy/model"
)

// Config configures a Client.
type Config struct {
	Addr   string       // control plane xDS address host:port (plaintext gRPC for now)
	Node   *corev3.Node // sent on the first request of each stream
	Logger *slog.Logger // nil means slog.Default()
	// OnUpdate gets every new complete, valid snapshot: first once CDS,
	// EDS, LDS and RDS have all arrived, then on every accepted change. It
	// is called from Run's goroutine, one call at a time, and should return
	// quickly (swap a pointer): responses wait while it runs.
	OnUpdate func(*model.Snapshot)
	// MaxRecvBytes bounds one response; 0 means gRPC's default, 4 MiB.
	MaxRecvBytes int
}

// Timing. Variables, not constants, so that tests can shorten them.
var (
	// Reconnect backoff after a stream ends.
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
	// Delay before NACKing the same version again. A SotW server answers a
	// NACK by resending its current (bad) resources at once; without a
	// delay client and server would loop as fast as the network allows
	// until the config is fixed. The first NACK of a version is immediate.
	renackMin = 100 * time.Millisecond
	renackMax = 2 * time.Second
)

// keepaliveParams make a control plane that vanished without closing the
// connection (host down, network partition) show up within ~15s. The
// server must allow pings this often (EnforcementPolicy.MinTime ≤ 10s),
// or it answers with GOAWAY too_many_pings.
var keepaliveParams = keepalive.ClientParameters{
	Time:                10 * time.Second,
	Timeout:             5 * time.Second,
	PermitWithoutStream: true,
}

// Client is an ADS client. Create it with New and start it with Run.
type Client struct {
	cfg Config
	log *slog.Logger

	// Owned by Run's goroutine.
	state   *state // accepted resources; survives reconnects
	dirty   bool   // state has changes not yet given to OnUpdate
	streams int    // streams opened so far

	mu     sync.Mutex // guards status
	status Status
}

// New returns a client; it does nothing until Run.
func New(cfg Config) *Client {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Client{
		cfg:    cfg,
		log:    log.With("component", "xds-client"),
		state:  newState(),
		status: Status{Versions: map[string]string{}},
	}
}

// Run connects to the control plane, subscribes, and reconnects with
// exponential backoff (100ms to 5s, with jitter) whenever the stream ends,
// until ctx is done. It returns nil when ctx is cancelled; cancelling
// closes the stream, which tells the control plane this proxy is gone.
// It returns an error only for a configuration it can never use. Run must
// not be called more than once at a time.
func (c *Client) Run(ctx context.Context) error {
	if c.cfg.Addr == "" {
		return errors.New("xdsclient: no control plane address")
	}
	bo := backoff{min: reconnectMin, max: reconnectMax}
	for {
		healthy, err := c.runStream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var permanent *permanentError
		if errors.As(err, &permanent) {
			return permanent.err
		}
		if healthy {
			// The control plane answered: the next outage starts over
			// from a short delay.
			bo.reset()
		}
		delay := bo.next()
		if status.Code(err) == codes.ResourceExhausted {
			c.log.Error("an xDS response is over this proxy's receive limit; keeping the last config",
				"addr", c.cfg.Addr, "error", err, "limit_bytes", c.cfg.MaxRecvBytes, "retry_in", delay)
		} else {
			c.log.Warn("xDS stream ended, reconnecting", "addr", c.cfg.Addr, "error", err, "retry_in", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }

// runStream runs one ADS stream until it fails or ctx is done. healthy
// reports whether the control plane sent anything on it.
func (c *Client) runStream(ctx context.Context) (healthy bool, err error) {
	// A connection per stream: our backoff alone decides when to retry,
	// instead of stacking it on gRPC's reconnect backoff (up to 120s).
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepaliveParams),
	}
	if c.cfg.MaxRecvBytes > 0 {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.cfg.MaxRecvBytes)))
	}
	conn, err := grpc.NewClient(c.cfg.Addr, opts...)
	if err != nil {
		return false, &permanentError{fmt.Errorf("xdsclient: %w", err)}
	}
	defer conn.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	c.streams++
	c.updateStatus(func(s *Status) {
		s.Connected = true
		if c.streams > 1 {
			s.Reconnects++
		}
	})
	defer c.updateStatus(func(s *Status) { s.Connected = false })
	c.log.Info("xDS stream open", "addr", c.cfg.Addr, "stream", c.streams)

	s := newSession(c, stream)
	err = s.run(ctx)
	return s.gotResponse, err
}
