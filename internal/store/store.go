package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"
)

// Errors callers tell apart with errors.Is. The HTTP layer maps them to
// status codes; nothing in this package knows about HTTP.
var (
	// ErrNotFound: no resource or instance under that name.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request can never succeed as written (bad key
	// segment, duplicate resource in one apply, too many resources).
	ErrInvalid = errors.New("invalid")
	// ErrConflict: concurrent writers kept changing the same keys.
	ErrConflict = errors.New("conflict")
)

// Config says where the store keeps its data.
type Config struct {
	// DataDir holds the embedded etcd (DataDir/etcd) and its log
	// (DataDir/etcd.log). Unused with Endpoints.
	DataDir string
	// Endpoints of an external etcd cluster. Empty: start an embedded
	// single-node etcd.
	Endpoints []string
	Logger    *slog.Logger
}

// Store reads and writes Trellis resources in etcd.
type Store struct {
	cli      *clientv3.Client
	embedded *embedded // nil with an external cluster
	log      *slog.Logger

	done      chan struct{} // closed by Close; stops Watch loops
	closeOnce sync.Once
}

// connectTimeout bounds the first round trip to etcd, so a wrong --etcd
// address fails at start with a clear message instead of hanging.
const connectTimeout = 10 * time.Second

// Open connects to etcd, starting an embedded one when cfg.Endpoints is
// empty. ctx bounds the start, not the life of the Store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Store{log: log.With("component", "store"), done: make(chan struct{})}

	endpoints := cfg.Endpoints
	if len(endpoints) == 0 {
		start := time.Now()
		e, err := startEmbedded(ctx, cfg.DataDir, log)
		if err != nil {
			return nil, err
		}
		s.embedded = e
		endpoints = []string{e.clientURL}
		go s.logEtcdErrors(e)
		s.log.Info("embedded etcd ready", "dataDir", cfg.DataDir, "endpoint", e.clientURL,
			"took", time.Since(start).Round(time.Millisecond))
	}

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      newZapLogger(log.With("component", "etcd-client"), zapcore.ErrorLevel),
		// Detect a dead connection (etcd restarted, network gone) so that
		// watches and lease keepalives move on instead of waiting on it.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
	})
	if err != nil {
		s.closeEmbedded()
		return nil, fmt.Errorf("store: etcd client for %v: %w", endpoints, err)
	}
	s.cli = cli

	// One round trip proves the endpoints answer; clientv3.New does not dial.
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: etcd at %v does not answer: %w", endpoints, err)
	}
	if s.embedded == nil {
		s.log.Info("connected to etcd", "endpoints", endpoints)
	}
	return s, nil
}

// Client is the etcd client, shared with package registry.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Close stops watches, closes the client and stops the embedded etcd.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		// The client goes first: its open watch streams would otherwise make
		// the embedded server wait out its graceful-stop timeout.
		if s.cli != nil {
			s.cli.Close()
		}
		s.closeEmbedded()
	})
	return nil
}

// logEtcdErrors reports what the embedded etcd's servers fail with while
// running; the channel is closed when etcd stops.
func (s *Store) logEtcdErrors(e *embedded) {
	for err := range e.etcd.Err() {
		if err != nil && !e.stopping.Load() {
			s.log.Error("embedded etcd", "err", err)
		}
	}
}

func (s *Store) closeEmbedded() {
	if s.embedded != nil {
		s.embedded.close()
	}
}
