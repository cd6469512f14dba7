package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestUserMessage(t *testing.T) {
	sentinels := []error{
		ErrAtCapacity, ErrWaitTimeout, ErrProfileDegraded, ErrUnknownProfile,
		ErrProfileNotAllowed, ErrUnknownSubsystem, ErrCommandDisabled, ErrForwardingDisabled,
		ErrClusterUnavailable, ErrBusy, ErrPodGone, ErrShuttingDown,
	}
	internal := UserMessage(errors.New("boom"))
	if internal != "podgate: internal error, please try again" {
		t.Fatalf("UserMessage(other) = %q", internal)
	}
	seen := map[string]error{}
	for _, s := range sentinels {
		wrapped := fmt.Errorf("claiming pod %q in 10.0.0.7: %w", "secret-pod", s)
		got := UserMessage(wrapped)
		if got == internal || !strings.HasPrefix(got, "podgate: ") {
			t.Errorf("UserMessage(%v) = %q, want a specific podgate message", s, got)
		}
		if strings.Contains(got, "secret-pod") || strings.Contains(got, "10.0.0.7") {
			t.Errorf("UserMessage(%v) leaks detail: %q", s, got)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("%v and %v share message %q", prev, s, got)
		}
		seen[got] = s
	}
	if UserMessage(nil) != "" {
		t.Errorf("UserMessage(nil) should be empty")
	}
}

func TestRefusal(t *testing.T) {
	r := &Refusal{Err: fmt.Errorf("pulling image: %w", ErrProfileDegraded), Reason: `the image for profile "x" cannot be pulled`}
	err := fmt.Errorf("attaching: %w", r)
	if got, want := UserMessage(err), `podgate: the image for profile "x" cannot be pulled`; got != want {
		t.Errorf("UserMessage = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrProfileDegraded) {
		t.Errorf("Refusal does not unwrap to its sentinel")
	}
	if !strings.Contains(r.Error(), "pulling image") {
		t.Errorf("Refusal.Error() = %q lacks the wrapped detail", r.Error())
	}
	empty := &Refusal{Err: ErrAtCapacity}
	if got := UserMessage(empty); got != "podgate: all pods are busy, please try again in a minute" {
		t.Errorf("Refusal without reason = %q, want the sentinel message", got)
	}
}
