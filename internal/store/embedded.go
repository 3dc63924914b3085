package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
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
	// tempDir holds the socket when the data dir's path is too long for
	// one; removed on close. Empty otherwise.
	tempDir string
	logFile *fileutil.LockedFile
	// stopping mutes etcd's console logging: a normal stop makes etcd log
	// its closed listeners as errors ("setting up serving ... failed").
	// They still reach etcd.log.
	stopping *atomic.Bool
}

// The client socket is DataDir/socket/etcd.sock; the directory is 0700.
const (
	socketDirName = "socket"
	socketName    = "etcd.sock"
	// maxSocketPath is the longest socket path every Unix takes: sun_path
	// is 108 bytes on Linux and 104 on macOS and the BSDs, with its NUL.
	maxSocketPath = 103
)

// noPeerURL is the peer URL the single member advertises. etcd listens on
// no peer address at all: a single-member cluster never dials one, and
// an open peer port would take raft messages (writes) from any local
// process. etcd cannot listen for peers on a Unix socket in a directory
// (it takes the socket path from the URL's host, which holds no "/").
var noPeerURL = url.URL{Scheme: "unix", Host: "trellis-single-member-no-peer"}

// startEmbedded starts etcd in dataDir/etcd, serving its clients on a Unix
// socket in dataDir/socket (mode 0700), and nothing else: no TCP port, no
// peer listener. Only this user (and root) can reach it, so no other local
// process can write keys past the API's validation.
//
// When dataDir's path is too long for a socket path (about 100 bytes), the
// socket is put in a fresh 0700 directory under the system's temporary
// directory instead, removed when etcd stops.
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

	sock, tempDir, err := socketPath(dataDir)
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	if tempDir != "" {
		log.Info("data dir path too long for a Unix socket; etcd's socket is in a temporary directory",
			"component", "store", "socket", sock)
	}
	e, err := startEtcd(ctx, filepath.Join(dataDir, "etcd"), sock, zl)
	if err != nil {
		logFile.Close()
		if tempDir != "" {
			os.RemoveAll(tempDir)
		}
		return nil, fmt.Errorf("store: starting embedded etcd in %s: %w", dataDir, err)
	}
	e.logFile, e.stopping, e.tempDir = logFile, stopping, tempDir
	return e, nil
}

// socketPath returns the path of etcd's client socket, in a directory only
// this user can enter: dataDir/socket, made 0700 even if it existed, or a
// new temporary directory (tempDir, to remove) when that path is too long.
func socketPath(dataDir string) (sock, tempDir string, err error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", "", err
	}
	dir := filepath.Join(abs, socketDirName)
	if sock := filepath.Join(dir, socketName); len(sock) <= maxSocketPath {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", "", err
		}
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
			return "", "", fmt.Errorf("%s must be a directory (err %v)", dir, err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return "", "", err
		}
		return sock, "", nil
	}
	tempDir, err = os.MkdirTemp("", "trellis-etcd-") // 0700
	if err != nil {
		return "", "", err
	}
	sock = filepath.Join(tempDir, socketName)
	if len(sock) > maxSocketPath {
		os.RemoveAll(tempDir)
		return "", "", fmt.Errorf("no path short enough for etcd's Unix socket: %s is too long (over %d bytes), and so is the temporary directory %s; use a shorter --data-dir or TMPDIR",
			filepath.Join(dir, socketName), maxSocketPath, tempDir)
	}
	return sock, tempDir, nil
}

// startEtcd starts etcd in dir serving clients on the Unix socket sock, and
// waits until it serves.
func startEtcd(ctx context.Context, dir, sock string, zl *zap.Logger) (*embedded, error) {
	clientURL := url.URL{Scheme: "unix", Path: sock}

	cfg := embed.NewConfig()
	cfg.Name = "trellis"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = nil
	cfg.AdvertisePeerUrls = []url.URL{noPeerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Only used when the member is new; a restart reads its membership from
	// the data dir, peer URL included (a data dir from a release that
	// listened on a loopback peer port keeps that URL, never dialled: a
	// single-member cluster has nobody to dial).
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
	if e.tempDir != "" {
		os.RemoveAll(e.tempDir)
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
