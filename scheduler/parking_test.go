package scheduler

import (
	"context"
	"time"
)

// fakeParked is one pod the fake keeps parked.
type fakeParked struct {
	pod   *Pod
	until time.Time
}

// Park, Unpark and UserPods make fakePools a Parking too: one parked pod
// per key, as the pool keeps, expiry judged with f.now, and elsewhere
// standing for the pods other replicas hold under a key.

var _ Parking = (*fakePools)(nil)

func (f *fakePools) Park(_ context.Context, pod *Pod, c Claim, until time.Time, heldHere int) error {
	if f.parkGate != nil {
		<-f.parkGate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.parked[c.UserKey]
	others := f.elsewhere[c.UserKey] + heldHere
	if limit := f.policies[pod.Profile].MaxPerUser; limit > 0 && others >= limit {
		return ErrParkOverLimit
	}
	if old != nil && old.pod != pod {
		delete(f.held, old.pod.Ref.Name)
		f.released <- old.pod.Ref.Name
	}
	f.parked[c.UserKey] = &fakeParked{pod: pod, until: until}
	return nil
}

func (f *fakePools) Unpark(_ context.Context, profile string, c Claim) (*Pod, ReconnectResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pp := f.parked[c.UserKey]
	switch {
	case pp == nil || pp.pod.Profile != profile:
		return nil, ReconnectNone, nil
	case !f.clock().Before(pp.until):
		return nil, ReconnectExpired, nil
	case f.gone[pp.pod.Ref.Name]:
		return nil, ReconnectDeleted, nil
	}
	delete(f.parked, c.UserKey)
	return pp.pod, ReconnectSamePod, nil
}

func (f *fakePools) UserPods(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.elsewhere[key]
	if f.parked[key] != nil {
		n++
	}
	return n
}

func (f *fakePools) clock() time.Time {
	if f.now != nil {
		return f.now()
	}
	return time.Now()
}

func (f *fakePools) parkedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.parked)
}

// parkingOf is pools as a Parking when it is the fake, else nil.
func parkingOf(pools Pools) Parking {
	if f, ok := pools.(*fakePools); ok {
		return f
	}
	return nil
}
