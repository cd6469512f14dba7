package scheduler

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"k8s.io/utils/clock"
)

// TestSessionModePodLimitPerUser: in session mode MaxPerUser bounds the
// pods a user's sessions hold at once, over all of their connections, and
// the user is told their own limit was reached, not that the server is
// full.
func TestSessionModePodLimitPerUser(t *testing.T) {
	pol := policy("batch")
	pol.Mode = ModeSession
	pol.MaxPerUser = 2
	pools := newFakePools(pol)
	pools.idle = 10
	ex := &blockingExecer{started: make(chan string, 10), release: make(chan struct{})}
	s := newTestScheduler(t, pools, ex, clock.RealClock{})
	a, err := s.Attach(context.Background(), id("alice", "batch"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A second connection of the same user is admitted: it holds no pod.
	b, err := s.Attach(context.Background(), id("alice", "batch"), nil)
	if err != nil {
		t.Fatalf("second session-mode connection: %v", err)
	}
	run := func(att Attachment) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := att.Run(context.Background(), Process{Kind: KindExec, Command: "sleep", Stdout: io.Discard})
			done <- err
		}()
		return done
	}
	first, second := run(a), run(b)
	<-ex.started
	<-ex.started
	_, err = a.Run(context.Background(), Process{Kind: KindExec, Command: "third", Stdout: io.Discard})
	if !errors.Is(err, ErrAtCapacity) {
		t.Fatalf("third session while two run: %v", err)
	}
	if msg := UserMessage(err); !strings.Contains(msg, "as many pods as one user may hold at once (2)") {
		t.Errorf("user message %q does not name the user's own limit", msg)
	}
	if n := pools.heldCount(); n != 2 {
		t.Errorf("%d pods held, want 2", n)
	}
	close(ex.release)
	for _, ch := range []chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	// The slots came back with the sessions.
	third := run(a)
	<-ex.started
	if err := <-third; err != nil {
		t.Fatalf("a session after the others ended: %v", err)
	}
	_ = a.Close()
	_ = b.Close()
}

// blockingExecer reports each exec on started and blocks it until release
// is closed.
type blockingExecer struct {
	fakeExecer
	started chan string
	release chan struct{}
}

func (e *blockingExecer) Exec(ctx context.Context, pod PodRef, cmd Command) (ExitStatus, error) {
	e.started <- pod.Name
	select {
	case <-e.release:
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
	return ExitStatus{}, nil
}

func (e *blockingExecer) Prepare(context.Context, PodRef, bool) (Prepared, error) {
	return nil, errors.New("no prepared streams")
}

// TestSessionModeOwnPodPerRun: in session mode every Run gets its own pod
// and gives it back when the process ends; no pod outlives the session.
func TestSessionModeOwnPodPerRun(t *testing.T) {
	pol := policy("batch")
	pol.Mode = ModeSession
	pools := newFakePools(pol)
	pools.idle = 1 // the second session is a cold pod
	ex := &fakeExecer{}
	s := newTestScheduler(t, pools, ex, clock.RealClock{})
	a, err := s.Attach(context.Background(), id("alice", "batch"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pools.heldCount() != 0 {
		t.Error("session-mode Attach claimed a pod")
	}
	for range 2 {
		if _, err := a.Run(context.Background(), Process{Kind: KindExec, Command: "true", Stdout: io.Discard}); err != nil {
			t.Fatal(err)
		}
		<-pools.released
	}
	if _, err := a.Dial(context.Background(), "localhost", 80); !errors.Is(err, ErrForwardingDisabled) {
		t.Errorf("Dial in session mode: %v", err)
	}
	_ = a.Close()
	if n := pools.heldCount(); n != 0 {
		t.Errorf("%d pods left behind", n)
	}
	if !slices.Equal(ex.pods, []string{"pod-1", "pod-2"}) {
		t.Errorf("sessions ran in %v", ex.pods)
	}
}
