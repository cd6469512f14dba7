package kube

import (
	"bufio"
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"k8s.io/client-go/tools/remotecommand"

	"github.com/podgate/podgate/scheduler"
)

// slowUpgrade stands in for client-go's WebSocket executor: the upgrade
// takes until upgraded is closed, and, like the real one, it is not
// aborted by a cancel meanwhile. A context already cancelled when the
// upgrade completes is the case in which client-go leaks its goroutines,
// so the fake records it. Once up, it plays a wrapper that exits on the
// exit spec.
type slowUpgrade struct {
	upgraded       chan struct{}
	cancelledEarly atomic.Bool
	sawExitSpec    atomic.Bool
}

func (f *slowUpgrade) Stream(remotecommand.StreamOptions) error { panic("unused") }

func (f *slowUpgrade) StreamWithContext(ctx context.Context, o remotecommand.StreamOptions) error {
	<-f.upgraded
	if ctx.Err() != nil {
		f.cancelledEarly.Store(true)
		return ctx.Err()
	}
	if o.Stdin == nil { // a signal delivery: no wrapper to play
		return nil
	}
	in := bufio.NewReader(o.Stdin)
	if _, err := in.ReadString('\n'); err != nil { // the hello
		return nil
	}
	_, _ = o.Stdout.Write([]byte(readyPrefix + "7\n"))
	n, _ := in.ReadString('\n')
	line, _ := in.ReadString('\n')
	if n == "1\n" && line == "exit 0\n" {
		f.sawExitSpec.Store(true)
	}
	return nil
}

// newSlowUpgrade returns an Executor whose every stream is f.
func newSlowUpgrade() (*slowUpgrade, *Executor) {
	f := &slowUpgrade{upgraded: make(chan struct{})}
	return f, &Executor{log: slog.New(slog.DiscardHandler),
		newStream: func(scheduler.PodRef, []string, bool, bool) (remotecommand.Executor, error) { return f, nil }}
}

// TestAbandonedStartDoesNotCancelMidUpgrade: a caller that gives up while
// the stream is being opened must get its error at once, and the stream
// must then be ended by the exit spec, not by cancelling client-go in the
// middle of its upgrade.
func TestAbandonedStartDoesNotCancelMidUpgrade(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e := newSlowUpgrade()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := e.Prepare(ctx, scheduler.PodRef{Namespace: "ns", Name: "p", Container: "c"}, true)
			errc <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-errc; err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("Prepare after the caller gave up = %v, want a cancellation error", err)
		}
		close(f.upgraded) // the upgrade completes after the caller left
		synctest.Wait()
		if f.cancelledEarly.Load() {
			t.Error("the stream was cancelled while its upgrade was in flight")
		}
		if !f.sawExitSpec.Load() {
			t.Error("the abandoned stream was not told to exit")
		}
	})
}

// TestCancelledExecDoesNotCancelMidUpgrade: a fresh plain exec (which sends
// its spec without waiting for the ready line) whose session ends during
// the upgrade is torn down only once the stream is up.
func TestCancelledExecDoesNotCancelMidUpgrade(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e := newSlowUpgrade()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := e.Exec(ctx, scheduler.PodRef{Namespace: "ns", Name: "p", Container: "c"},
				scheduler.Command{Argv: []string{"true"}})
			errc <- err
		}()
		synctest.Wait()
		cancel()
		synctest.Wait()
		close(f.upgraded)
		if err := <-errc; err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("Exec whose context ended = %v, want a cancellation error", err)
		}
		if f.cancelledEarly.Load() {
			t.Error("the stream was cancelled while its upgrade was in flight")
		}
	})
}
