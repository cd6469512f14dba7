// Command podgate is an SSH server that puts every user into a warm
// Kubernetes pod. It is configured only through environment variables
// (`podgate env` lists them), serves metrics and health on a second port, and
// shuts down in two phases: stop accepting and drain, then release.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "env":
			if err := envCommand(os.Args[2:], os.Stdout, os.Stderr); err != nil {
				fmt.Fprintln(os.Stderr, "podgate:", err)
				os.Exit(2)
			}
			return
		case "-h", "-help", "--help", "help":
			_ = writeUsage(os.Stdout)
			return
		default:
			fmt.Fprintf(os.Stderr, "podgate: unknown argument %q; podgate is configured through environment variables (see `podgate env`)\n", os.Args[1])
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Environ(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "podgate:", err)
		var ce *ConfigError
		if errors.As(err, &ce) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run parses the configuration once, wires the components and serves until
// ctx ends. Shutdown is two-phase: first podgate turns not-ready, stops
// accepting, tells users and drains sessions up to the drain deadline; then
// the scheduler, pool and informers stop, releasing claimed pods and the
// replica's Lease.
func run(ctx context.Context, environ []string, stdout, stderr io.Writer) error {
	cfg, err := LoadConfig(environ)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Ops.LogFormat, cfg.Ops.LogLevel.Level())
	routeKlog(log)
	audit, closeAudit, err := openAudit(cfg.Ops.AuditLog, stdout)
	if err != nil {
		return err
	}
	defer closeAudit()

	// Components run until release is cancelled, which happens only after
	// the SSH server has drained.
	compCtx, release := context.WithCancel(context.Background())
	defer release()
	app, err := wire(compCtx, cfg, log, audit)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.SSH.Listen)
	if err != nil {
		return fmt.Errorf("listening for ssh on %s: %w", cfg.SSH.Listen, err)
	}

	g, gctx := errgroup.WithContext(compCtx)
	g.Go(func() error { return app.health.Run(gctx) })
	g.Go(func() error { return app.start(gctx) })
	g.Go(func() error {
		// Become ready only once the informers have synced.
		if err := app.waitSynced(gctx); err != nil {
			return err
		}
		app.health.SetAccepting(true)
		log.Info("podgate ready", "ssh", ln.Addr().String(), "metrics", cfg.Ops.MetricsAddr, "replica", app.replica)
		return app.ssh.Serve(gctx, ln)
	})
	g.Go(func() error {
		select {
		case <-ctx.Done():
		case <-gctx.Done():
			return nil
		}
		log.Info("shutting down: no longer accepting, draining sessions", "deadline", cfg.Ops.DrainDeadline)
		app.health.SetAccepting(false)
		drain, cancel := context.WithTimeout(context.Background(), cfg.Ops.DrainDeadline)
		defer cancel()
		if err := app.ssh.Shutdown(drain); err != nil {
			log.Warn("drain deadline passed; remaining sessions were closed", "err", err)
		}
		release()
		return nil
	})
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("podgate stopped")
	return nil
}
