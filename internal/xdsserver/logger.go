package xdsserver

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/envoyproxy/go-control-plane/pkg/log"
)

// cacheLogger adapts slog to go-control-plane's printf-style logger.
//
// Levels are shifted down one step: go-control-plane logs every watch it
// opens at Info and routine ADS flow (an EDS request naming the previous
// cluster set) at Warn. The events an operator needs — connects, NACKs,
// publishes — are logged by this package itself.
type cacheLogger struct{ l *slog.Logger }

var _ log.Logger = cacheLogger{}

func (c cacheLogger) Debugf(format string, args ...any) { c.logf(slog.LevelDebug, format, args) }
func (c cacheLogger) Infof(format string, args ...any)  { c.logf(slog.LevelDebug, format, args) }
func (c cacheLogger) Warnf(format string, args ...any)  { c.logf(slog.LevelInfo, format, args) }
func (c cacheLogger) Errorf(format string, args ...any) { c.logf(slog.LevelError, format, args) }

func (c cacheLogger) logf(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !c.l.Enabled(ctx, level) { // skip the Sprintf on the hot path
		return
	}
	c.l.Log(ctx, level, fmt.Sprintf(format, args...))
}
