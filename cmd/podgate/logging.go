package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"k8s.io/klog/v2"
)

// newLogger returns the operator logger: text or JSON on w, at level. Only
// operators read it; users never see its detail.
func newLogger(w io.Writer, format LogFormat, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// routeKlog sends client-go's klog output (reflector warnings, leader
// election, throttling notices) through logger, so that one process writes
// one log format. klog is process-global: main calls this once.
func routeKlog(logger *slog.Logger) {
	klog.SetSlogLogger(slog.New(&klogNoise{logger.With("source", "client-go").Handler()}))
}

// benignStreamErrors are what client-go reports as errors every time an exec
// or port-forward stream ends normally (the WebSocket is closed under its
// reader and pinger, or podgate closes the pipe that feeds a session's
// stdin into the stream). At one or more per session they would drown the
// real errors, so they are logged at debug level instead.
var benignStreamErrors = []string{
	"use of closed network connection",
	"Websocket Ping failed",
	"io: read/write on closed pipe",
}

// klogNoise demotes benignStreamErrors to debug and passes everything else.
type klogNoise struct{ slog.Handler }

func (h *klogNoise) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug && isBenignStreamError(r) {
		r.Level = slog.LevelDebug
		if !h.Handler.Enabled(ctx, r.Level) {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h *klogNoise) WithAttrs(as []slog.Attr) slog.Handler {
	return &klogNoise{h.Handler.WithAttrs(as)}
}

func (h *klogNoise) WithGroup(name string) slog.Handler {
	return &klogNoise{h.Handler.WithGroup(name)}
}

func isBenignStreamError(r slog.Record) bool {
	text := r.Message
	r.Attrs(func(a slog.Attr) bool {
		text += " " + a.Value.String()
		return true
	})
	for _, s := range benignStreamErrors {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// openAudit returns the audit logger, which writes one JSON object per line
// for each login, session and pod event, to stdout, to a file opened for
// appending, or nowhere when dest is AuditOff. The returned close function
// closes the file (and is a no-op otherwise); call it after the last event.
func openAudit(dest string, stdout io.Writer) (*slog.Logger, func() error, error) {
	noop := func() error { return nil }
	switch dest {
	case AuditOff:
		return slog.New(slog.DiscardHandler), noop, nil
	case AuditStdout:
		return newAuditLogger(stdout), noop, nil
	}
	// 0o600: audit lines name users and source addresses.
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening audit log %q: %w", dest, err)
	}
	return newAuditLogger(f), f.Close, nil
}

// newAuditLogger logs every event, whatever the operator log level, because
// an audit trail with gaps is worse than none. slog's JSON handler serialises
// writes, so concurrent sessions never interleave lines.
func newAuditLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("log", "audit")
}
