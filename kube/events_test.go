package kube

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"

	"github.com/podgate/podgate/scheduler"
)

var guestPod = scheduler.PodRef{Namespace: "guests", Name: "p1", Container: "guest"}

// TestEventLevels: which reasons each PODGATE_POD_EVENTS level records,
// and with which type (client-go's fake recorder sees every call).
func TestEventLevels(t *testing.T) {
	all := []scheduler.EventReason{
		scheduler.EventClaimed, scheduler.EventParked, scheduler.EventReconnected, scheduler.EventReleased,
		scheduler.EventReaped, scheduler.EventProfileDegraded, scheduler.EventClaimRecordFailed,
	}
	for _, tc := range []struct {
		level EventLevel
		want  []string
	}{
		{EventsOff, nil},
		{EventsPool, []string{"Normal Reaped n", "Warning ProfileDegraded n", "Warning ClaimRecordFailed n"}},
		{EventsAll, []string{"Normal Claimed n", "Normal Parked n", "Normal Reconnected n", "Normal Released n",
			"Normal Reaped n", "Warning ProfileDegraded n", "Warning ClaimRecordFailed n"}},
	} {
		fr := events.NewFakeRecorder(len(all))
		e := &Events{level: tc.level, recorder: fr, started: true}
		for _, r := range all {
			e.PodEvent(guestPod, "uid-1", r, "n")
		}
		close(fr.Events)
		var got []string
		for s := range fr.Events {
			got = append(got, s)
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("level %s recorded %q, want %q", tc.level, got, tc.want)
		}
	}
}

// TestEventsWrittenAndFlushed: through client-go's broadcaster, an Event
// reaches the events.k8s.io API regarding the pod by kind, name and UID
// (what kubectl describe selects on), and Run returns once it ends and the
// write is done.
func TestEventsWrittenAndFlushed(t *testing.T) {
	cs := fake.NewClientset()
	created := make(chan *eventsv1.Event, 1)
	cs.PrependReactor("create", "events", func(a k8stesting.Action) (bool, runtime.Object, error) {
		created <- a.(k8stesting.CreateAction).GetObject().(*eventsv1.Event)
		return false, nil, nil
	})
	e := NewEvents(cs.EventsV1(), EventsPool, 10*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	e.PodEvent(guestPod, "uid-1", scheduler.EventProfileDegraded, `profile "x" is degraded`)
	var ev *eventsv1.Event
	select {
	case ev = <-created:
	case <-time.After(30 * time.Second):
		t.Fatal("no Event written")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := ev.Regarding
	if r.Kind != "Pod" || r.Namespace != "guests" || r.Name != "p1" || r.UID != "uid-1" || ev.Namespace != "guests" {
		t.Errorf("regarding %+v in namespace %q", r, ev.Namespace)
	}
	if ev.Type != "Warning" || ev.Reason != "ProfileDegraded" || ev.Action != "Start" || ev.Note != `profile "x" is degraded` || ev.ReportingController != ReportingController {
		t.Errorf("event type %q reason %q action %q note %q controller %q", ev.Type, ev.Reason, ev.Action, ev.Note, ev.ReportingController)
	}
}

// TestEventBeforeRunIsWritten: an Event recorded before Run has started
// the broadcaster's sink (a pod deleted while podgate starts up) is kept
// and written once Run starts, not dropped.
func TestEventBeforeRunIsWritten(t *testing.T) {
	cs := fake.NewClientset()
	created := make(chan string, 1)
	cs.PrependReactor("create", "events", func(a k8stesting.Action) (bool, runtime.Object, error) {
		created <- a.(k8stesting.CreateAction).GetObject().(*eventsv1.Event).Reason
		return false, nil, nil
	})
	e := NewEvents(cs.EventsV1(), EventsPool, 10*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	e.PodEvent(guestPod, "uid-1", scheduler.EventReaped, "early")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case reason := <-created:
		if reason != string(scheduler.EventReaped) {
			t.Errorf("wrote %q, want %q", reason, scheduler.EventReaped)
		}
	case <-time.After(30 * time.Second):
		t.Error("the Event recorded before Run was never written")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestTruncateNote: notes fit the API server's 1 kB bound, cut between
// runes.
func TestTruncateNote(t *testing.T) {
	long := strings.Repeat("é", 600) // 1200 bytes
	got := truncateNote(long)
	if len(got) > noteLimit || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Errorf("truncated to %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if s := "short"; truncateNote(s) != s {
		t.Error("a short note was changed")
	}
}
