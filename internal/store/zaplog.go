package store

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcd (server and client) logs through zap. slogCore forwards zap entries
// at or above a level to our slog logger, so a Trellis process has one log
// stream and tests that discard logs discard etcd's too.
type slogCore struct {
	log    *slog.Logger
	min    zapcore.Level
	mute   *atomic.Bool // when set, drop everything (nil: never)
	fields []zapcore.Field
}

// newZapLogger returns a zap logger that writes entries of level min and
// above to log.
func newZapLogger(log *slog.Logger, min zapcore.Level) *zap.Logger {
	return zap.New(&slogCore{log: log, min: min})
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return l >= c.min && (c.mute == nil || !c.mute.Load())
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	merged := append(append([]zapcore.Field(nil), c.fields...), fields...)
	return &slogCore{log: c.log, min: c.min, mute: c.mute, fields: merged}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	h := c.log.Handler()
	if !h.Enabled(context.Background(), slogLevel(e.Level)) {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	rec := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	for _, k := range slices.Sorted(maps.Keys(enc.Fields)) {
		rec.AddAttrs(slog.Any(k, enc.Fields[k]))
	}
	if e.LoggerName != "" {
		rec.AddAttrs(slog.String("logger", e.LoggerName))
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	return h.Handle(context.Background(), rec)
}

func (c *slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l >= zapcore.ErrorLevel:
		return slog.LevelError
	case l >= zapcore.WarnLevel:
		return slog.LevelWarn
	case l >= zapcore.InfoLevel:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}
