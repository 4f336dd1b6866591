package kubebench

import (
	"math"
	"slices"
	"time"
)

// Latencies summarises per-Service times.
type Latencies struct {
	N             int
	P50, P99, Max time.Duration
}

// Summarise returns the nearest-rank p50 and p99 and the maximum of ds
// (with fewer than 100 samples, p99 is the maximum). ds is not changed.
func Summarise(ds []time.Duration) Latencies {
	s := slices.Clone(ds)
	slices.Sort(s)
	return Latencies{N: len(s), P50: percentile(s, 50), P99: percentile(s, 99), Max: percentile(s, 100)}
}

// percentile is the nearest-rank p-th percentile of sorted: the smallest
// sample with at least p% of the samples at or below it; 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
