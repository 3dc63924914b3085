package main

import (
	"context"
	"log/slog"
	"os"

	"trellis.dev/trellis/internal/control"
)

// startInProcess runs the control plane inside the benchmark, so that
// runtime/pprof sees it (-inprocess -cpuprofile). Memory and CPU figures
// then include the simulated proxies: use this mode for profiles, the
// child process for numbers.
func startInProcess(ctx context.Context, dataDir, logPath string) (*controlPlane, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	srv, err := control.Start(ctx, control.Config{
		DataDir: dataDir, HTTPAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(logFile, nil)),
	})
	if err != nil {
		logFile.Close()
		return nil, err
	}
	return &controlPlane{
		pid: os.Getpid(), httpAddr: srv.HTTPAddr(), xdsAddr: srv.XDSAddr(),
		stop: func() error {
			defer logFile.Close()
			return srv.Close()
		},
	}, nil
}
