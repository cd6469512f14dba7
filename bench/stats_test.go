package bench

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var s []Sample
	for i := 1; i <= 100; i++ {
		s = append(s, Sample{Timing: Timing{Prompt: time.Duration(i) * time.Millisecond}})
	}
	s = append(s, Sample{Err: "refused"})
	got := Summarize(s, Prompt)
	want := Summary{Count: 100, Errors: 1, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond,
		P99: 99 * time.Millisecond, Max: 100 * time.Millisecond, Min: time.Millisecond}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if got := Summarize(nil, Prompt); got != (Summary{}) {
		t.Errorf("empty Summarize = %+v", got)
	}
	if q := Quantile([]time.Duration{7}, 0.99); q != 7 {
		t.Errorf("Quantile of one = %v", q)
	}
}

func TestOutputOK(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"\x1b[?2004huser@pod:~$ echo ok\r\n\x1b[?2004l\rok\r\n", true},
		{"$ echo ok\r\nok\r\n", true},
		{"$ echo ok\r\n", false},
		{"ok\r\n", true},
		{"", false},
	} {
		if got := outputOK([]byte(c.in)); got != c.want {
			t.Errorf("outputOK(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestPromptSkipsNotices(t *testing.T) {
	w := newWatchBuffer()
	w.skip = isNotice
	_, _ = w.Write([]byte("waiting for a pod (position 1, starting, 0s)\r\n"))
	if !w.first.IsZero() || !w.sawSkipped() {
		t.Fatalf("a progress line counted as the prompt")
	}
	_, _ = w.Write([]byte("user@pod:~$ "))
	if w.first.IsZero() {
		t.Errorf("the prompt did not count")
	}
}

// TestPromptWaitEndsWithRefusal: a progress line and podgate's refusal in
// one write are not a prompt, and the session's end ends the wait with an
// error instead of leaving it to the client's deadline.
func TestPromptWaitEndsWithRefusal(t *testing.T) {
	w := newWatchBuffer()
	w.skip = isNotice
	_, _ = w.Write([]byte("waiting for a pod (position 1, starting, 0s)\r\npodgate: no node has room for this environment\r\n"))
	if !w.first.IsZero() {
		t.Fatal("a refusal counted as the prompt")
	}
	ended := make(chan struct{})
	close(ended)
	if _, err := w.waitFirst(context.Background(), ended); !errors.Is(err, errSessionEnded) {
		t.Errorf("waitFirst after the session ended: %v", err)
	}
	if isNotice([]byte("waiting for a pod (position 1, starting, 0s)\r\nuser@pod:~$ ")) {
		t.Error("a prompt after a progress line in one write was skipped")
	}
}
