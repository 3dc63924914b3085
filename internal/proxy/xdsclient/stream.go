package xdsclient

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"trellis.dev/trellis/internal/proxy/model"
)

type adsStream = discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient

// session is the protocol state of one ADS stream: nonces, what was sent,
// and the requests still to send. Accepted resources live in the Client,
// since they outlive the stream.
//
// One goroutine receives; the session's loop handles responses and does
// all the sending, so that a delayed NACK of one type does not hold up the
// others.
type session struct {
	c      *Client
	stream adsStream

	sentNode    bool
	gotResponse bool
	nonces      map[string]string   // type URL → nonce of its last response
	sentNames   map[string][]string // type URL → resource names last sent
	subscribed  map[string]bool     // type URL → a request was sent on this stream
	nackErr     map[string]string   // type URL → why its last response was rejected
	nackVersion map[string]string   // type URL → version last rejected
	renack      map[string]*backoff // type URL → delay before re-NACKing that version
	due         map[string]time.Time
}

func newSession(c *Client, stream adsStream) *session {
	return &session{
		c:           c,
		stream:      stream,
		nonces:      map[string]string{},
		sentNames:   map[string][]string{},
		subscribed:  map[string]bool{},
		nackErr:     map[string]string{},
		nackVersion: map[string]string{},
		renack:      map[string]*backoff{},
		due:         map[string]time.Time{},
	}
}

func (s *session) run(ctx context.Context) error {
	// Resubscribe: CDS and LDS always, EDS and RDS with the names known
	// from earlier streams, all with the accepted versions and no nonce.
	now := time.Now()
	for _, t := range typeURLs {
		if wildcard(t) || len(s.c.state.names[t]) > 0 {
			s.due[t] = now
		}
	}
	if err := s.flush(); err != nil {
		if errors.Is(err, io.EOF) {
			// Send says only EOF when the stream failed; Recv has why.
			_, err = s.stream.Recv()
		}
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	responses := make(chan *discoveryv3.DiscoveryResponse)
	recvErr := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := s.stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case responses <- resp:
			case <-ctx.Done():
				return
			}
		}
	}()
	// Cancelling the stream's context ends Recv; wait so no goroutine
	// outlives the stream.
	defer func() { cancel(); <-done }()

	for {
		if err := s.wait(ctx, responses, recvErr); err != nil {
			return err
		}
		if err := s.flush(); err != nil {
			if errors.Is(err, io.EOF) {
				// Send says only EOF when the stream failed (a response
				// over the receive limit, the server gone); the receiving
				// goroutine gets the real status.
				select {
				case rerr := <-recvErr:
					return rerr
				case <-time.After(time.Second):
				}
			}
			return err
		}
	}
}

// wait handles the next response, or returns when a delayed request is
// due, or with the error that ends the stream.
func (s *session) wait(ctx context.Context, responses <-chan *discoveryv3.DiscoveryResponse, recvErr <-chan error) error {
	var due <-chan time.Time
	if next, ok := s.nextDue(); ok {
		t := time.NewTimer(time.Until(next))
		defer t.Stop()
		due = t.C
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-recvErr:
		return err
	case resp := <-responses:
		s.handle(resp)
	case <-due:
	}
	return nil
}

// handle checks one response and queues its ACK or NACK.
func (s *session) handle(resp *discoveryv3.DiscoveryResponse) {
	s.gotResponse = true
	t := resp.GetTypeUrl()
	log := s.c.log.With("type", shortName(t), "version", resp.GetVersionInfo(), "nonce", resp.GetNonce())
	if _, known := newResource(t); !known {
		log.Warn("ignoring response of a type the proxy did not subscribe to", "resources", len(resp.GetResources()))
		return
	}
	s.nonces[t] = resp.GetNonce()

	var (
		next    *state
		snap    *model.Snapshot
		waiting []string
	)
	got, err := decode(resp)
	if err == nil {
		next = s.c.state.with(t, resp.GetVersionInfo(), got)
		snap, waiting, err = next.build()
	}
	if err != nil {
		s.reject(log, resp, err)
		return
	}

	prev := s.c.state
	s.c.state = next
	if !prev.equal(next) {
		s.c.dirty = true
	}
	delete(s.nackErr, t)
	delete(s.nackVersion, t)
	delete(s.renack, t)
	s.due[t] = time.Now() // ACK
	// A new CDS/LDS set may change which EDS/RDS resources we need.
	for _, dep := range typeURLs {
		if !wildcard(dep) && !slices.Equal(next.names[dep], s.sentNames[dep]) &&
			(s.subscribed[dep] || len(next.names[dep]) > 0) {
			s.due[dep] = time.Now()
		}
	}
	var waitingBefore []string
	s.c.updateStatus(func(st *Status) {
		st.Versions[t] = resp.GetVersionInfo()
		waitingBefore, st.Waiting = st.Waiting, waiting
	})
	log.Debug("accepted", "resources", len(got))
	if n, first := droppedEndpoints(got); n > 0 {
		log.Warn("left out endpoints that do not convert; the rest of the update is applied",
			"dropped", n, "first", first)
		s.c.updateStatus(func(st *Status) { st.DroppedEndpoints += n; st.LastDropped = first })
	}

	switch {
	case snap == nil:
		if !slices.Equal(waiting, waitingBefore) {
			log.Info("waiting for resources before applying", "missing", waiting)
		}
	case s.c.dirty:
		s.c.dirty = false
		s.c.updateStatus(func(st *Status) { st.LastUpdate = time.Now() })
		log.Info("applying snapshot", "versions", snap.Versions)
		if s.c.cfg.OnUpdate != nil {
			s.c.cfg.OnUpdate(snap)
		}
	}
}

// reject queues a NACK and keeps everything as it was. A version NACKed
// again (the server resends it in answer to the NACK) is NACKed after a
// growing delay; see renackMin.
func (s *session) reject(log *slog.Logger, resp *discoveryv3.DiscoveryResponse, err error) {
	t := resp.GetTypeUrl()
	msg := err.Error()
	s.nackErr[t] = msg
	due := time.Now()
	if v, seen := s.nackVersion[t]; seen && v == resp.GetVersionInfo() {
		bo := s.renack[t]
		if bo == nil {
			bo = &backoff{min: renackMin, max: renackMax}
			s.renack[t] = bo
		}
		due = due.Add(bo.next())
		log.Debug("rejecting again", "error", msg)
	} else {
		s.nackVersion[t] = resp.GetVersionInfo()
		delete(s.renack, t)
		log.Warn("rejecting config, keeping the previous one", "error", msg)
	}
	if prev, ok := s.due[t]; !ok || due.Before(prev) {
		s.due[t] = due
	}
	s.c.updateStatus(func(st *Status) {
		st.LastNACK = &NACK{TypeURL: t, Version: resp.GetVersionInfo(), Nonce: resp.GetNonce(), Error: msg, At: time.Now()}
	})
}

// nextDue is the earliest time a request is due.
func (s *session) nextDue() (time.Time, bool) {
	var next time.Time
	for _, d := range s.due {
		if next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next, !next.IsZero()
}

// flush sends the requests that are due, in typeURLs order. A request is
// built when sent, from the current state, so a later change (new names)
// is never overtaken by an older queued request.
func (s *session) flush() error {
	now := time.Now()
	for _, t := range typeURLs {
		d, ok := s.due[t]
		if !ok || d.After(now) {
			continue
		}
		delete(s.due, t)
		if err := s.stream.Send(s.request(t)); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) request(t string) *discoveryv3.DiscoveryRequest {
	req := &discoveryv3.DiscoveryRequest{
		VersionInfo:   s.c.state.versions[t],
		ResponseNonce: s.nonces[t],
		TypeUrl:       t,
	}
	if !wildcard(t) {
		// An empty list after a non-empty one unsubscribes from all.
		req.ResourceNames = s.c.state.names[t]
	}
	if msg, rejected := s.nackErr[t]; rejected {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: msg}
	}
	if !s.sentNode {
		req.Node = s.c.cfg.Node
		s.sentNode = true
	}
	s.sentNames[t] = req.ResourceNames
	s.subscribed[t] = true
	s.c.log.Debug("request", "type", shortName(t), "version", req.VersionInfo, "nonce", req.ResponseNonce,
		"names", req.ResourceNames, "nack", req.ErrorDetail != nil)
	return req
}

// droppedEndpoints counts the endpoints left out of a response's entries
// and returns the first reason, sorted by resource name so logs repeat.
func droppedEndpoints(got map[string]*entry) (n int, first string) {
	var firstName string
	for name, e := range got {
		n += len(e.dropped)
		if len(e.dropped) > 0 && (firstName == "" || name < firstName) {
			firstName, first = name, e.dropped[0].Error()
		}
	}
	return n, first
}
