package pool

import corev1 "k8s.io/api/core/v1"

// The pool's vocabulary on pods and Leases, in one place.
//
// A managed pod's life, by its podgate.io/state label:
//
//	         leader creates                 leader relabels (JSON patch: test state=idle)
//	(new) ─────────────────► idle ─────────────────────────────────────────► reserved
//	  │                       │  ▲                                               │ owner=R, run=R's run
//	  │ leader creates        │  └──────── owner R gives surplus back ───────────┤ (test state, owner, run)
//	  └──────────────────────────────────────────────────────────────────────────┤
//	                          │ any replica: merge patch with the                │ owner R hands it out from
//	                          │ cached resourceVersion, then a fresh exec        │ memory; the claim record is
//	                          ▼                                                  ▼ written in parallel (tests)
//	                       claimed (owner, run, session, user, user-key) ◄──────┘
//	                          │  ▲  │ Release: delete (uid precondition), or, when that fails, ──► released
//	   Park (JSON patch:      │  │  ▼                                                                │
//	   test uid, claimed,     │  │ deleted ◄────────────────── the leader deletes ◄───────────────────┘
//	   owner, run; drop       ▼  │ Unpark (any replica: merge patch with the cached resourceVersion)
//	   owner and run) ──► parked (user-key, parked-until) ──► deleted by the leader once
//	                                                          parked-until has passed (park.go)
//
// A pod created for a waiting user starts claimed (AnnCold); a handoff turns
// it idle. Reserved and claimed pods of a replica whose liveness Lease lapsed,
// or of an earlier run of a live replica (LabelRun), are deleted, never adopted: see
// reap.go and reserved.go for where the isolation invariant is enforced.
// A parked pod has no owner: it outlives the replica that parked it, and
// only its user's key (park.go) leads a login to it.
const (
	LabelManaged = "podgate.io/managed"
	LabelProfile = "podgate.io/profile"
	LabelState   = "podgate.io/state"
	LabelHash    = "podgate.io/template-hash"
	// LabelOwner names the replica a reserved or claimed pod belongs to.
	LabelOwner   = "podgate.io/owner"
	LabelSession = "podgate.io/session"

	AnnUser       = "podgate.io/user"
	AnnRemoteAddr = "podgate.io/remote-addr"
	AnnClaimedAt  = "podgate.io/claimed-at"
	AnnConnID     = "podgate.io/conn"
	// AnnCold marks a pod created claimed for a waiting user: a pool miss.
	AnnCold = "podgate.io/cold"
	// LabelRun names the run (one process's random id) of the owner that
	// reserved or claimed the pod. A restarted process keeps its replica
	// id but gets a new run, so it can tell the pods an earlier run may
	// have given to users from its own. It is a label, as the owner is, so
	// that the claim record's test operations find it on every pod.
	LabelRun = "podgate.io/run"
	// LabelUserKey is scheduler.UserKey of the user a claimed or parked
	// pod is for: the pod informer indexes it, so every replica counts a
	// user's pods and finds their parked one without a scan.
	LabelUserKey = "podgate.io/user-key"
	// AnnParkedUntil is when a parked pod's reconnect window ends
	// (RFC 3339); the leader deletes it after that.
	AnnParkedUntil = "podgate.io/parked-until"

	// LabelReplica marks the liveness Leases of podgate replicas.
	LabelReplica = "podgate.io/replica"
	// LeaseAnnRun on a liveness Lease is the run currently holding it.
	LeaseAnnRun = "podgate.io/run"
	// LeaseAnnWant on a liveness Lease is the reserved pods the replica
	// wants, per profile, as JSON ({"default": 12}); see want.go.
	LeaseAnnWant = "podgate.io/want"
	// LeaseAnnShares on the leader's liveness Lease is the split it
	// decided, as JSON; see sharesRecord.
	LeaseAnnShares = "podgate.io/shares"
)

// Pod states in the podgate.io/state label.
const (
	// StateIdle: unreserved; any replica may claim it.
	StateIdle = "idle"
	// StateReserved: belongs to one replica's run (LabelOwner, LabelRun),
	// which alone opens streams into it and hands it out.
	StateReserved = "reserved"
	StateClaimed  = "claimed"
	// StateParked: kept for its user's reconnect (LabelUserKey) until
	// AnnParkedUntil; no replica owns it.
	StateParked   = "parked"
	StateReleased = "released"
)

// Spare reports whether a pod waits for a user, reserved or not: what the
// pool's idle target counts.
func Spare(pod *corev1.Pod) bool {
	s := pod.Labels[LabelState]
	return s == StateIdle || s == StateReserved
}

// ManagedSelector selects the pods a pool owns; cmd scopes the pod informer
// with it.
const ManagedSelector = LabelManaged + "=true"

// ReplicaSelector selects replica liveness Leases; cmd scopes the Lease
// informer with it.
const ReplicaSelector = LabelReplica + "=true"

// LeaderLeaseName is the coordination Lease whose holder replenishes and
// reaps.
const LeaderLeaseName = "podgate-pool-leader"

// livenessLeaseName names a replica's own liveness Lease.
func livenessLeaseName(replica string) string { return "podgate-replica-" + replica }

// replicaOfLease is the replica a liveness Lease belongs to, from its
// name; ok is false for any other Lease.
func replicaOfLease(name string) (string, bool) {
	const prefix = "podgate-replica-"
	if len(name) <= len(prefix) || name[:len(prefix)] != prefix {
		return "", false
	}
	return name[len(prefix):], true
}
