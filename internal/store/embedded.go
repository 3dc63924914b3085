package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// readyTimeout bounds how long an embedded etcd may take to become ready. A
// fresh single node is ready in about a second; replaying a large WAL takes
// longer.
const readyTimeout = 60 * time.Second

// embedded is a single-node etcd running inside this process.
type embedded struct {
	etcd      *embed.Etcd
	clientURL string
	logFile   *fileutil.LockedFile
	// stopping mutes etcd's console logging: a normal stop makes etcd log
	// its closed listeners as errors ("setting up serving ... failed").
	// They still reach etcd.log.
	stopping *atomic.Bool
}

// startEmbedded starts etcd in dataDir/etcd on two free loopback ports.
//
// It never uses etcd's default ports 2379/2380: several control planes,
// parallel tests and a real etcd must be able to share one machine. The
// ports are found by binding :0 and releasing it, so another process can take
// one in between; a bind failure is retried with fresh ports.
//
// etcd logs errors to log (component "etcd") and warnings and above to
// dataDir/etcd.log, so its chatter stays out of the console.
func startEmbedded(ctx context.Context, dataDir string, log *slog.Logger) (*embedded, error) {
	if dataDir == "" {
		return nil, errors.New("store: DataDir is required for the embedded etcd")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	// The log file doubles as the data dir's lock. Without it a second
	// control plane on the same data dir would hang inside etcd, waiting
	// for the database file's lock with no timeout.
	logFile, err := fileutil.TryLockFile(filepath.Join(dataDir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if errors.Is(err, fileutil.ErrLocked) {
		return nil, fmt.Errorf("store: data dir %s is in use by another control plane", dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	stopping := new(atomic.Bool)
	zl := etcdLogger(log.With("component", "etcd"), logFile, stopping)

	const attempts = 3
	for i := 1; ; i++ {
		ports, err := freePorts(2)
		if err != nil {
			logFile.Close()
			return nil, fmt.Errorf("store: %w", err)
		}
		e, err := startEtcd(ctx, filepath.Join(dataDir, "etcd"), ports[0], ports[1], zl)
		if err == nil {
			e.logFile, e.stopping = logFile, stopping
			return e, nil
		}
		if i == attempts || !isAddrInUse(err) {
			logFile.Close()
			return nil, fmt.Errorf("store: starting embedded etcd in %s: %w", dataDir, err)
		}
		log.Warn("etcd port taken between choosing and binding it, retrying", "component", "store", "err", err)
	}
}

// startEtcd starts etcd in dir on the given loopback ports and waits until
// it serves.
func startEtcd(ctx context.Context, dir, clientPort, peerPort string, zl *zap.Logger) (*embedded, error) {
	clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", peerPort)}

	cfg := embed.NewConfig()
	cfg.Name = "trellis"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Only used when the member is new; a restart reads its membership from
	// the data dir. The peer port changes between runs, which a single-member
	// cluster never notices: nobody dials it.
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl)
	// Keep one hour of history: watches resume across short disconnects,
	// and instance churn (one revision per lease) does not grow the
	// database forever.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	// Half etcd's default raft timing. A single member has no peer to
	// heartbeat, so this only makes a fresh member elect itself sooner
	// (start-up) and lowers etcd's floor on lease TTLs to 1 s.
	cfg.TickMs = 50
	cfg.ElectionMs = 500
	// The JSON gateway is not used by Trellis; fewer handlers, less surface.
	cfg.EnableGRPCGateway = false

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return &embedded{etcd: e, clientURL: clientURL.String()}, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed while starting: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("etcd not ready after %s", readyTimeout)
	}
}

func (e *embedded) close() {
	if e.stopping != nil {
		e.stopping.Store(true)
	}
	e.etcd.Close()
	if e.logFile != nil {
		e.logFile.Close()
	}
}

// etcdLogger sends errors to log and warnings and above to file.
func etcdLogger(log *slog.Logger, file *fileutil.LockedFile, mute *atomic.Bool) *zap.Logger {
	fileCore := zapcore.NewCore(
		zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(file),
		zapcore.WarnLevel,
	)
	return zap.New(zapcore.NewTee(&slogCore{log: log, min: zapcore.ErrorLevel, mute: mute}, fileCore))
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. All n listeners
// are open at once so the ports differ.
func freePorts(n int) ([]string, error) {
	ports := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ports = append(ports, port)
	}
	return ports, nil
}

// isAddrInUse also catches errors that lost their errno on the way up.
func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}
