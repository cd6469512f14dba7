package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/tools/events"

	"github.com/podgate/podgate/scheduler"
)

// EventLevel says which Events podgate records on guest pods
// (PODGATE_POD_EVENTS).
type EventLevel string

// The levels; they must match the enum tag of the setting in cmd/podgate.
const (
	// EventsOff records none.
	EventsOff EventLevel = "off"
	// EventsPool records what does not happen on every login: the pool's
	// deletions and the pods that show a profile degraded.
	EventsPool EventLevel = "pool"
	// EventsAll adds every login's claim, park, reconnect and release,
	// at the cost of one or two more API writes per login.
	EventsAll EventLevel = "all"
)

// ReportingController names podgate as the source of its Events, as
// kubectl describe shows it ("From").
const ReportingController = "podgate"

// noteLimit is the API server's bound on an Event's note, in bytes.
const noteLimit = 1024

// Events records scheduler.PodEvents as events.k8s.io/v1 Events through
// client-go's event broadcaster, which writes them in the background,
// folds repeats of one event on one pod into a series, and retries while
// the API server is away. Recording returns at once and never calls the
// API on the caller's goroutine, so no login waits for its Events.
type Events struct {
	level        EventLevel
	broadcaster  events.EventBroadcaster
	recorder     events.EventRecorder
	sink         *trackingSink
	flushTimeout time.Duration
	log          *slog.Logger

	// The broadcaster hands an Event only to the watchers it has at that
	// moment, so one recorded before Run has started the sink's watcher
	// would be dropped; such Events wait in early and Run replays them.
	// mu protects started and early; it is a leaf.
	mu      sync.Mutex
	started bool
	early   []earlyEvent
}

// earlyEvent is an Event recorded before Run started.
type earlyEvent struct {
	ref    *corev1.ObjectReference
	typ    string
	reason scheduler.EventReason
	note   string
}

// maxEarly bounds the Events kept before Run starts; more are dropped (a
// process that never runs its recorder must not grow).
const maxEarly = 256

var _ scheduler.PodEvents = (*Events)(nil)

// NewEvents returns a recorder writing through client, which should be
// the process's one shared client (its writes count in
// podgate_kube_writes_total as resource "events"). flushTimeout bounds how
// long Run waits, at shutdown, for writes still in flight.
func NewEvents(client eventsv1client.EventsV1Interface, level EventLevel, flushTimeout time.Duration, log *slog.Logger) *Events {
	sink := &trackingSink{sink: &events.EventSinkImpl{Interface: client}}
	b := events.NewBroadcaster(sink)
	return &Events{
		level: level, broadcaster: b, sink: sink, flushTimeout: flushTimeout, log: log,
		recorder: b.NewRecorder(scheme.Scheme, ReportingController),
	}
}

// PodEvent records one Event on a pod, if the level records its reason.
func (e *Events) PodEvent(pod scheduler.PodRef, uid string, reason scheduler.EventReason, note string) {
	switch {
	case e.level == EventsOff:
		return
	case e.level != EventsAll && reason.PerLogin():
		return
	}
	typ := corev1.EventTypeNormal
	if reason.Warning() {
		typ = corev1.EventTypeWarning
	}
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: types.UID(uid)}
	e.mu.Lock()
	if !e.started {
		if len(e.early) < maxEarly {
			e.early = append(e.early, earlyEvent{ref, typ, reason, note})
		}
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	e.record(earlyEvent{ref, typ, reason, note})
}

func (e *Events) record(ev earlyEvent) {
	e.recorder.Eventf(ev.ref, nil, ev.typ, string(ev.reason), ev.reason.Action(), "%s", truncateNote(ev.note))
}

// Run writes recorded Events until ctx ends, then flushes: the broadcaster
// is shut down and the writes in flight get up to the flush timeout. Give
// it a context that ends only after every component that records Events
// has stopped, so that the last of them (pods released at shutdown) are
// written. An Event recorded in the last instant before the broadcaster
// shuts down may still be lost: Events are best effort.
func (e *Events) Run(ctx context.Context) error {
	writes, stopWrites := context.WithCancel(context.Background())
	defer stopWrites()
	if err := e.broadcaster.StartRecordingToSinkWithContext(writes); err != nil {
		return fmt.Errorf("starting the event recorder: %w", err)
	}
	e.mu.Lock()
	e.started = true
	early := e.early
	e.early = nil
	e.mu.Unlock()
	for _, ev := range early {
		e.record(ev)
	}
	<-ctx.Done()
	e.broadcaster.Shutdown()
	flush, cancel := context.WithTimeout(context.Background(), e.flushTimeout)
	defer cancel()
	if n := e.sink.waitIdle(flush); n > 0 {
		e.log.Warn("stopped with Events still being written; they are dropped", "events", n)
	}
	return nil
}

// truncateNote cuts a note to the API server's limit on a rune boundary.
func truncateNote(s string) string {
	if len(s) <= noteLimit {
		return s
	}
	const ellipsis = "…"
	cut := noteLimit - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// trackingSink is the broadcaster's sink, counting the writes in flight so
// that Run can wait for them at shutdown.
type trackingSink struct {
	sink events.EventSink

	mu       sync.Mutex // protects inFlight and idle
	inFlight int
	// idle is closed when inFlight drops to zero; nil while none waits.
	idle chan struct{}
}

var _ events.EventSink = (*trackingSink)(nil)

func (s *trackingSink) Create(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	defer s.begin()()
	return s.sink.Create(ctx, ev)
}

func (s *trackingSink) Update(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	defer s.begin()()
	return s.sink.Update(ctx, ev)
}

func (s *trackingSink) Patch(ctx context.Context, ev *eventsv1.Event, data []byte) (*eventsv1.Event, error) {
	defer s.begin()()
	return s.sink.Patch(ctx, ev, data)
}

// begin counts one write in flight and returns the func that ends it.
func (s *trackingSink) begin() func() {
	s.mu.Lock()
	s.inFlight++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.inFlight--; s.inFlight == 0 && s.idle != nil {
			close(s.idle)
			s.idle = nil
		}
	}
}

// waitIdle waits until no write is in flight, or ctx ends; it returns how
// many were still in flight then.
func (s *trackingSink) waitIdle(ctx context.Context) int {
	s.mu.Lock()
	if s.inFlight == 0 {
		s.mu.Unlock()
		return 0
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return 0
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.inFlight
	}
}
