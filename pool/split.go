package pool

import (
	"cmp"
	"slices"
)

// The split: how the leader divides one profile's idle target between the
// live replicas' reserved shares and the unreserved rest. It is plain data,
// like sizing.go: the leader computes it every pass from what the Lease
// informer shows, publishes it in its own liveness Lease (sharesRecord), and
// acts only on what it has published, so that the owners, which give
// surplus back, and the leader, which creates and relabels, read the same
// numbers.
//
// Rules:
//
//  1. The unreserved remainder is target/20, and at least 1 once the target
//     is 2 or more. Those pods any replica may claim (a conditional PATCH and
//     a fresh exec), so a replica that just joined, or a burst larger than a
//     replica's share, still finds warm pods, while almost the whole pool
//     serves logins on the fast path.
//  2. The rest is split between the live replicas in proportion to what each
//     wants (want.go: its own recent demand and burst, at least 1), by the
//     largest-remainder method with ties to the lower replica id, so that
//     the same inputs always give the same split. With equal wants (replicas
//     that have all been quiet) it is an even split; a quiet replica beside
//     a busy one holds few.
//  3. No replica's share exceeds maxReserved, which bounds the memory its
//     prepared streams take; what a cap leaves over goes to the others in
//     proportion, and what nobody may take stays unreserved.
//  4. Only replicas with a live liveness Lease that names their run take
//     part (claimants); the shares of one that left go back into the split.

// claimant is one live replica asking for reserved pods of a profile.
type claimant struct {
	replica string
	want    int
}

// split is one profile's division of its idle target.
type split struct {
	// Unreserved is how many idle pods stay claimable by any replica.
	Unreserved int `json:"unreserved"`
	// Shares is each claimant's reserved share.
	Shares map[string]int `json:"shares"`
}

// unreservedRemainder is rule 1's remainder of a target.
func unreservedRemainder(target int) int {
	if target < 2 {
		return 0
	}
	return max(1, target/20)
}

// splitTarget applies the rules above.
func splitTarget(target int, claimants []claimant, maxReserved int) split {
	out := split{Shares: make(map[string]int, len(claimants))}
	active := slices.Clone(claimants)
	slices.SortFunc(active, func(a, b claimant) int { return cmp.Compare(a.replica, b.replica) })
	for i := range active {
		active[i].want = max(1, active[i].want)
		out.Shares[active[i].replica] = 0
	}
	left := max(0, target-unreservedRemainder(target))
	for left > 0 && len(active) > 0 {
		give := proportional(left, active)
		spill := 0
		next := active[:0:0]
		for i, c := range active {
			got := min(give[i], max(0, maxReserved-out.Shares[c.replica]))
			out.Shares[c.replica] += got
			spill += give[i] - got
			if out.Shares[c.replica] < maxReserved {
				next = append(next, c)
			}
		}
		if len(next) == len(active) {
			break // no cap was reached, so nothing spilled
		}
		left, active = spill, next
	}
	reserved := 0
	for _, n := range out.Shares {
		reserved += n
	}
	out.Unreserved = max(0, target-reserved)
	return out
}

// proportional divides n between claimants in proportion to their wants
// (all at least 1), largest remainders first, ties to the earlier one.
func proportional(n int, cs []claimant) []int {
	total := 0
	for _, c := range cs {
		total += c.want
	}
	give := make([]int, len(cs))
	rems := make([]int, len(cs))
	given := 0
	for i, c := range cs {
		q := n * c.want
		give[i], rems[i] = q/total, q%total
		given += give[i]
	}
	order := make([]int, len(cs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rems[b], rems[a]) })
	for k := 0; k < n-given; k++ {
		give[order[k]]++
	}
	return give
}

// largestDeficit returns the replica whose reserved pods (held plus being
// created for it) fall furthest short of its share, or "" when none is
// short: the owner a new pod is created for.
func largestDeficit(shares map[string]int, held map[string]int) string {
	best, bestGap := "", 0
	for r, share := range shares {
		gap := share - held[r]
		if gap > bestGap || (gap == bestGap && gap > 0 && r < best) {
			best, bestGap = r, gap
		}
	}
	return best
}
