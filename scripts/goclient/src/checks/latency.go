package checks

import (
	"sort"
	"time"
)

// SortedLatencies joins the latencies each worker recorded into one ascending list.
func SortedLatencies(perWorker [][]time.Duration) []time.Duration {
	var all []time.Duration
	for _, own := range perWorker {
		all = append(all, own...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all
}

// PercentileMs is the p-th percentile (0 to 100) of an ascending list, in milliseconds; 0 for
// an empty list.
func PercentileMs(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(p/100*float64(len(sorted)-1))]) / float64(time.Millisecond)
}
