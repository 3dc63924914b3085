package membership

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/api"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	Addr     string       // the control plane's xDS address (the service is served there)
	Instance api.Instance // what to register while ready; ID is the node ID
	Logger   *slog.Logger
}

// Status is what the sidecar knows about its membership.
type Status struct {
	Connected  bool   `json:"connected"`
	Ready      bool   `json:"ready"`      // what the sidecar announces
	Registered bool   `json:"registered"` // what the control plane last confirmed
	Left       bool   `json:"left"`       // Leave was called: never ready again
	LastError  string `json:"lastError,omitempty"`
}

// Timing; variables so tests can shorten them.
var (
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
	// refusedMax is the longest wait after the control plane refused the
	// registration (a bad address, a node ID held by another process):
	// retrying faster would only fill its log.
	refusedMax = 30 * time.Second
)

// Same as the xDS client's: a vanished control plane shows within ~15 s.
var keepaliveParams = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}

// Client is the sidecar's side. It announces readiness as SetReady is
// called and keeps the stream up until ctx ends or Leave.
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	changed chan struct{} // a SetReady or Leave to send; capacity 1

	mu     sync.Mutex
	status Status
	acked  chan struct{} // closed and replaced at every answer
}

// NewClient returns a client; nothing happens until Run.
func NewClient(cfg ClientConfig) *Client {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, log: log.With("component", "membership"),
		changed: make(chan struct{}, 1), acked: make(chan struct{})}
}

// SetReady says whether the app is ready. Only the latest value is sent.
func (c *Client) SetReady(ready bool) {
	c.mu.Lock()
	if c.status.Left {
		ready = false
	}
	same := c.status.Ready == ready
	c.status.Ready = ready
	c.mu.Unlock()
	if !same {
		c.poke()
	}
}

func (c *Client) poke() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Status is a copy of the current status.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Leave announces not ready for good and returns once the control plane
// confirms the instance is out of the registry, or ctx ends. Run keeps the
// stream up (a leave is not a crash); cancel its ctx afterwards.
func (c *Client) Leave(ctx context.Context) {
	c.mu.Lock()
	c.status.Left, c.status.Ready = true, false
	c.mu.Unlock()
	c.poke()
	for {
		c.mu.Lock()
		done := !c.status.Registered || !c.status.Connected
		acked := c.acked
		c.mu.Unlock()
		if done {
			return
		}
		select {
		case <-acked:
		case <-ctx.Done():
			return
		}
	}
}

// Run keeps the membership stream up until ctx ends, reconnecting with
// backoff. Ending ctx closes the stream, which deregisters the instance.
func (c *Client) Run(ctx context.Context) error {
	if c.cfg.Addr == "" {
		return errors.New("membership: no control plane address")
	}
	delay := reconnectMin
	for {
		healthy, err := c.runStream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		maxDelay := reconnectMax
		switch status.Code(err) {
		case codes.AlreadyExists, codes.InvalidArgument:
			// Refused: the reason is for a person to read, once per try.
			c.log.Error("the control plane refused this instance", "error", status.Convert(err).Message())
			maxDelay = refusedMax
		default:
			if healthy {
				delay = reconnectMin
			}
			c.log.Warn("membership stream ended, reconnecting", "addr", c.cfg.Addr, "error", err)
		}
		c.mu.Lock()
		c.status.LastError = err.Error()
		c.mu.Unlock()
		jittered := delay/2 + rand.N(delay/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(jittered):
		}
		delay = min(2*delay, maxDelay)
	}
}

// runStream runs one stream. healthy reports whether the server answered.
func (c *Client) runStream(ctx context.Context) (healthy bool, err error) {
	conn, err := grpc.NewClient(c.cfg.Addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepaliveParams))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := conn.NewStream(ctx, joinStreamDesc, joinMethod)
	if err != nil {
		return false, err
	}
	c.setConnected(true)
	defer c.setConnected(false)

	answers := make(chan error, 1)
	var gotAnswer atomic.Bool
	go func() {
		for {
			st := new(statuspb.Status)
			if err := stream.RecvMsg(st); err != nil {
				answers <- err
				return
			}
			gotAnswer.Store(true)
			c.answered(st)
		}
	}()
	sent, first := false, true
	for {
		c.mu.Lock()
		a := Announcement{Instance: c.cfg.Instance, Ready: c.status.Ready}
		c.mu.Unlock()
		if first || a.Ready != sent {
			if err := stream.SendMsg(a.node()); err != nil {
				// The server's reason is in the receive side's error.
				return gotAnswer.Load(), <-answers
			}
			sent, first = a.Ready, false
		}
		select {
		case <-ctx.Done():
			return gotAnswer.Load(), ctx.Err()
		case err := <-answers:
			return gotAnswer.Load(), err
		case <-c.changed:
		}
	}
}

func (c *Client) setConnected(up bool) {
	c.mu.Lock()
	c.status.Connected = up
	if !up {
		c.status.Registered = false
	}
	close(c.acked)
	c.acked = make(chan struct{})
	c.mu.Unlock()
}

func (c *Client) answered(st *statuspb.Status) {
	c.mu.Lock()
	was := c.status.Registered
	c.status.Registered = st.GetMessage() == msgRegistered
	c.status.LastError = ""
	now := c.status.Registered
	close(c.acked)
	c.acked = make(chan struct{})
	c.mu.Unlock()
	if now != was {
		if now {
			c.log.Info("instance registered: peers can send it traffic")
		} else {
			c.log.Info("instance not registered: peers stop sending it traffic")
		}
	}
}

// Joined is one membership stream opened by Join.
type Joined struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	err error
}

// Join opens one membership stream on conn, announces a, and waits for the
// control plane's answer. It is for harnesses that simulate many sidecars
// over a few connections (bench/controlplane); a sidecar uses Client.
func Join(conn grpc.ClientConnInterface, a Announcement) (*Joined, error) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := conn.NewStream(ctx, joinStreamDesc, joinMethod)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := stream.SendMsg(a.node()); err != nil {
		cancel()
		return nil, err
	}
	first := new(statuspb.Status)
	if err := stream.RecvMsg(first); err != nil {
		cancel()
		return nil, err
	}
	j := &Joined{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(j.done)
		for {
			if err := stream.RecvMsg(new(statuspb.Status)); err != nil {
				if ctx.Err() == nil {
					j.mu.Lock()
					j.err = err
					j.mu.Unlock()
				}
				return
			}
		}
	}()
	return j, nil
}

// Err is what ended the stream, nil while it is up or after Close.
func (j *Joined) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Close ends the stream; the control plane deregisters the instance.
func (j *Joined) Close() {
	j.cancel()
	<-j.done
}
