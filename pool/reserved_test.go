package pool

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// TestReservedSetIgnoresStaleEventsAfterLettingGo: an event that still
// shows a pod reserved for this run, delivered after the run let the pod
// go (handed it out, gave it back, took it out to delete), never puts it
// back in the set: a second hand-out would give one pod to two users while
// the first claim record is in flight. The pod may come back only after an
// event has shown it no longer this run's (given back, then reserved
// again) or it was deleted; a new pod of the same name is a new pod.
func TestReservedSetIgnoresStaleEventsAfterLettingGo(t *testing.T) {
	now := time.Unix(1e9, 0)
	const prof = "default"
	letGoBy := map[string]func(s *reservedSet) *reservedPod{
		"hand-out": func(s *reservedSet) *reservedPod { return s.handOut(prof) },
		"give-back": func(s *reservedSet) *reservedPod {
			got := s.surplus(prof, 0, 0, now)
			if got == nil {
				got = s.surplus(prof, 0, 0, now)
			}
			if len(got) != 1 {
				t.Fatalf("surplus gave %d pods, want 1", len(got))
			}
			return got[0]
		},
		"take-out": func(s *reservedSet) *reservedPod { return s.takeOut("a") },
		"stop": func(s *reservedSet) *reservedPod {
			all := s.takeAll()
			if len(all) != 1 {
				t.Fatalf("takeAll gave %d pods, want 1", len(all))
			}
			return all[0]
		},
	}
	for how, letGo := range letGoBy {
		t.Run(how, func(t *testing.T) {
			s := newReservedSet()
			if prep, _ := s.observe("a", prof, "uid-1", true, true, now); !prep {
				t.Fatal("a Ready reserved pod did not ask for a stream")
			}
			if rp := letGo(s); rp == nil || rp.name != "a" {
				t.Fatalf("letting go gave %v, want pod a", rp)
			}
			if prep, _ := s.observe("a", prof, "uid-1", true, true, now); prep || s.count(prof) != 0 {
				t.Fatalf("a stale event put the pod back (prepare %v, count %d)", prep, s.count(prof))
			}
			if s.handOut(prof) != nil {
				t.Fatal("the pod let go of was handed out again")
			}
			// The write lands: the pod is idle (or claimed) now.
			s.observe("a", prof, "uid-1", false, true, now)
			// The leader reserves it for this run again.
			if prep, _ := s.observe("a", prof, "uid-1", true, true, now); !prep || s.count(prof) != 1 {
				t.Fatalf("the pod reserved again after its release is not in the set (prepare %v, count %d)", prep, s.count(prof))
			}
		})
	}
	t.Run("deleted, then a new pod of the same name", func(t *testing.T) {
		s := newReservedSet()
		s.observe("a", prof, "uid-1", true, true, now)
		s.handOut(prof)
		s.drop("a")
		if s.observe("a", prof, "uid-1", true, true, now); s.count(prof) != 1 {
			t.Fatal("after the deletion, an event for the name was ignored")
		}
		s2 := newReservedSet()
		s2.observe("a", prof, "uid-1", true, true, now)
		s2.handOut(prof)
		if s2.observe("a", prof, types.UID("uid-2"), true, true, now); s2.count(prof) != 1 {
			t.Fatal("a new pod of the same name as one let go of was ignored")
		}
	})
}
