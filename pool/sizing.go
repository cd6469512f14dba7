package pool

import (
	"math"
	"slices"
	"sort"
	"time"
)

// Demand model. The pool needs enough idle pods to cover the claims that
// arrive while a replacement starts. By Little's law that is mu = lambda × T
// pods on average, lambda the claim rate (hits and misses: every claim
// takes an idle pod, whether or not it found one) and T the time a pod
// takes to start. Arrivals are random, so the target adds a margin for
// their variance: for Poisson arrivals the claims within T have mean and
// variance mu, and S = ceil(mu + z × sqrt(mu)) with z = 2.33 covers them
// in about 99 % of start times. T is a high quantile (p90) of recent
// starts rather than the median, because the slow starts are the ones
// that leave a user without a pod.
//
// An earlier sizer grew only on misses, one pod per miss, up to a ceiling
// of 2 × rate × median start: it always lagged demand (half the logins
// missed at 1 login/s on a node that could start 1.7 pods/s). Growing on
// misses alone, without any ceiling, was worse still: at 3 logins/s on a
// 2-CPU node it asked for ever more pods, which started ever more slowly
// (44 s per pod), so the demand side is also bounded by the node's
// capacity (capacity.go): above it, the target stops growing past what the
// node can start within T.
const (
	// rateWindow is how far back claims count towards the claim rate.
	rateWindow = 30 * time.Second
	// fastWindow is the shorter window a step up in the rate shows in.
	fastWindow = 10 * time.Second
	// rateFloor is the shortest span a rate is taken over (rateOver).
	rateFloor = 5 * time.Second
	// startSamples is how many recent pod starts the start time is taken
	// from.
	startSamples = 20
	// startQuantile is the quantile of those starts used as T.
	startQuantile = 0.9
	// defaultStart stands in for the start time until a pod has been seen
	// starting.
	defaultStart = 2 * time.Second
	// arrivalZ is the margin for the arrivals' variance, in standard
	// deviations of a Poisson count (2.33: about 99 %, one-sided).
	arrivalZ = 2.33
	// headroom bounds the misses' correction (see sizer) at this multiple
	// of the predicted need; want.go also uses it for a replica's want.
	headroom = 2
)

// forecast is what recent demand calls for. It is plain data, computed by
// the pure function forecastFor.
type forecast struct {
	// Rate is the claim rate, claims per second over rateWindow.
	Rate float64
	// Capacity is the rate at which the node turns pods Ready (pods per
	// second, capacity.go); 0 when not known yet.
	Capacity float64
	// Start is T, the startQuantile of recent starts.
	Start time.Duration
	// Need is S = ceil(mu + arrivalZ × sqrt(mu)), with mu = Rate × Start,
	// or Capacity × Start when Rate exceeds a known Capacity: pods beyond
	// what the node can start within T would only queue behind the
	// others and slow every start down.
	Need int
	// Overloaded: Rate exceeds a known Capacity.
	Overloaded bool
}

// forecastFor applies the demand model's rule (see forecast.Need).
func forecastFor(rate, capacity float64, start time.Duration) forecast {
	f := forecast{Rate: rate, Capacity: capacity, Start: start}
	eff := rate
	if capacity > 0 && rate > capacity {
		f.Overloaded = true
		eff = capacity
	}
	mu := eff * start.Seconds()
	if mu > 0 {
		f.Need = int(math.Ceil(mu + arrivalZ*math.Sqrt(mu)))
	}
	return f
}

// sizer decides a profile's idle target between its pool min and max. It
// is plain data; demand keeps one per profile under its lock.
//
// Rules:
//   - Prediction: the target is at least the forecast's Need (within the
//     bounds), so the pool grows as soon as claims come faster or pods
//     start more slowly, before anyone misses.
//   - Correction: every miss (a user who had to wait for a cold pod) still
//     raises the target by one, up to headroom × Need, so arrivals burstier
//     than the model are covered too. While overloaded, misses raise it no
//     further than Need: the node cannot start more.
//   - Shrinking: when the target is above what the forecast calls for, it
//     drops by one after shrinkAfter without growth, and again after every
//     further shrinkAfter, down to the forecast or min. Growth is fast and
//     shrinking slow, because a miss costs a user seconds while an idle pod
//     costs only a little memory.
//   - Floor: while a scheduled peak is due (peaks.go), the target is at
//     least its size, within the bounds.
type sizer struct {
	lo, hi int
	target int
	// lastChange is the last growth or shrink; shrinking counts from it.
	lastChange time.Time
	// claims are when claims (hits and misses) were seen within
	// rateWindow, oldest first.
	claims []time.Time
	// starts are the last startSamples pod start times.
	starts []time.Duration
	// capacity is the node's rate of starts as demand last measured it
	// (capacity.go); 0 when unknown.
	capacity float64
	// floor is the size a scheduled peak asks for now; 0 when none.
	floor int
	// burstSince is when the current burst was first seen; zero when
	// none (see holdRefill).
	burstSince time.Time
	// inherited counts the spare pods this process deleted because an
	// earlier run of its replica had reserved them, since inheritedAt;
	// see adopt.
	inherited   int
	inheritedAt time.Time
}

// newSizer starts at the lower bound.
func newSizer(lo, hi int, now time.Time) *sizer {
	return &sizer{lo: lo, hi: hi, target: lo, lastChange: now}
}

// setBounds applies a profile change, keeping the target inside the bounds.
func (s *sizer) setBounds(lo, hi int) {
	s.lo, s.hi = lo, hi
	s.target = s.clamp(s.target)
}

func (s *sizer) clamp(n int) int { return max(s.lo, min(n, s.hi)) }

// setCapacity takes demand's latest capacity estimate (0: unknown).
func (s *sizer) setCapacity(c float64) { s.capacity = c }

// setFloor takes the size a scheduled peak asks for now (0: none).
func (s *sizer) setFloor(n int) { s.floor = n }

// hit records a claim that found an idle pod.
func (s *sizer) hit(now time.Time) {
	s.claims = append(s.claims, now)
	s.grow(now)
}

// miss records a claim that found none: the prediction applies, then the
// correction (see the rules).
func (s *sizer) miss(now time.Time) {
	s.claims = append(s.claims, now)
	s.grow(now)
	f := s.forecast(now)
	ceiling := headroom * f.Need
	if f.Overloaded {
		ceiling = f.Need
	}
	if t := s.clamp(min(s.target+1, ceiling)); t > s.target {
		s.target = t
	}
	s.lastChange = now
}

// grow raises the target to the forecast's Need and the peak floor.
func (s *sizer) grow(now time.Time) {
	if t := s.clamp(max(s.forecast(now).Need, s.floor)); t > s.target {
		s.target = t
		s.lastChange = now
	}
}

// forget drops the claims older than rateWindow.
func (s *sizer) forget(now time.Time) {
	i := 0
	for i < len(s.claims) && now.Sub(s.claims[i]) >= rateWindow {
		i++
	}
	s.claims = s.claims[i:]
}

// rate is the claim rate: the higher of the rates over rateWindow and
// over the last fastWindow. The short window lets the target follow a step
// up within seconds; the long one lets it come down only once a whole
// rateWindow was quieter.
func (s *sizer) rate(now time.Time) float64 {
	s.forget(now)
	n := len(s.claims)
	if n == 0 {
		return 0
	}
	seen := now.Sub(s.claims[0])
	recent := n - sort.Search(n, func(i int) bool { return now.Sub(s.claims[i]) < fastWindow })
	return max(rateOver(n, seen, rateWindow), rateOver(recent, seen, fastWindow))
}

// rateOver is the rate of n claims within a window w whose claims go back
// seen: n over w, or over seen × n/(n-1) when the claims go back less than
// w (n claims since the first are n-1 gaps), and never over less than
// rateFloor, so that a handful of claims at once is not read as an endless
// stream.
func rateOver(n int, seen, w time.Duration) float64 {
	if n == 0 {
		return 0
	}
	span := w
	if n > 1 {
		span = min(w, seen*time.Duration(n)/time.Duration(n-1))
	}
	return float64(n) / max(rateFloor, span).Seconds()
}

// forecast applies the demand model to what the sizer has seen.
func (s *sizer) forecast(now time.Time) forecast {
	return forecastFor(s.rate(now), s.capacity, s.startTime())
}

// started records how long a pod took from its first sighting to Ready.
func (s *sizer) started(d time.Duration) {
	if len(s.starts) == startSamples {
		s.starts = s.starts[1:]
	}
	s.starts = append(s.starts, d)
}

// startTime is T: the startQuantile of the recent pod starts (nearest
// rank), or defaultStart before any.
func (s *sizer) startTime() time.Duration {
	return quantile(s.starts, startQuantile, defaultStart)
}

// quantile is the q-quantile of ds by nearest rank, or def when ds is
// empty.
func quantile(ds []time.Duration, q float64, def time.Duration) time.Duration {
	if len(ds) == 0 {
		return def
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// tick applies the prediction, then shrinks the target by one step when it
// has not grown for shrinkAfter and is above what the forecast and the peak
// floor call for.
func (s *sizer) tick(now time.Time, shrinkAfter time.Duration) {
	s.grow(now)
	keep := s.clamp(max(s.forecast(now).Need, s.floor))
	if s.target > keep && now.Sub(s.lastChange) >= shrinkAfter {
		s.target--
		s.lastChange = now
	}
}

// adopt raises the target to the idle pods a new leader finds (within the
// bounds): the previous leader sized the pool from claims this replica may
// not have counted (a restarted replica takes the cold pods it lists at
// start-up as old news), and a failover must neither trim a pool the
// previous leader grew nor grow it. Shrinking then goes on at the usual
// slow pace.
//
// A restarted replica deletes the pods its earlier run had reserved (that
// run may have handed one to a user before it died), and those deletions
// may reach the cache before the restarted replica leads: the spare pods
// it counts then miss them, and the pool it inherited would be trimmed by
// its own share. So the pods it deleted that way within inheritWindow
// before this term count as found too. They are counted once: adopt
// forgets them.
func (s *sizer) adopt(idle int, now time.Time) {
	if s.inherited > 0 && now.Sub(s.inheritedAt) <= inheritWindow {
		idle += s.inherited
	}
	s.inherited = 0
	if t := s.clamp(idle); t > s.target {
		s.target = t
		s.lastChange = now
	}
}

// inheritWindow bounds how long before a term the earlier run's deleted
// reserved pods still count towards the pool it adopts: a restarted
// replica that leads at once (its own leader Lease) leads within seconds;
// one that leads much later finds a pool that another leader has sized
// and refilled since.
const inheritWindow = 30 * time.Second

// inherit records one spare pod of the earlier run deleted at now.
func (s *sizer) inherit(now time.Time) {
	s.inherited++
	s.inheritedAt = now
}

// Refill pacing. A burst's logins need the CPUs for their exec starts (the
// API server, the kubelet, containerd and each guest's shell), and starting
// their replacement pods at the same moment takes the same CPUs (runc, the
// CNI plugin, the kubelet, containerd). So while a burst lasts the leader
// holds back replacements: from the moment burstClaims claims arrived within
// burstWindow, until burstQuiet passes with no claim, and never longer than
// burstHold. Steady logins (fewer than burstClaims a second) are not held.
const (
	burstClaims = 10
	burstQuiet  = time.Second
	burstHold   = 5 * time.Second
)

// holdRefill reports whether replacements are held back now.
func (s *sizer) holdRefill(now time.Time) bool {
	n := len(s.claims)
	if n == 0 || now.Sub(s.claims[n-1]) >= burstQuiet {
		s.burstSince = time.Time{}
		return false
	}
	if s.burstSince.IsZero() {
		last, k := s.claims[n-1], 0
		for i := n - 1; i >= 0 && last.Sub(s.claims[i]) < burstWindow; i-- {
			k++
		}
		if k < burstClaims {
			return false
		}
		s.burstSince = now
	}
	return now.Sub(s.burstSince) < burstHold
}
