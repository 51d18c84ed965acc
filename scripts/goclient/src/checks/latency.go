package checks

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Timed runs requests 0..<total from `workers` goroutines (each takes the next number when it
// is free) and returns the latencies of those that succeeded, ascending, how many failed, and
// the time the whole run took.
func Timed(workers, total int, request func(worker, n int) error) (sorted []time.Duration, failures int64, elapsed time.Duration) {
	var next int64
	latencies := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := atomic.AddInt64(&next, 1); n <= int64(total); n = atomic.AddInt64(&next, 1) {
				sent := time.Now()
				if err := request(w, int(n-1)); err != nil {
					atomic.AddInt64(&failures, 1)
					continue
				}
				latencies[w] = append(latencies[w], time.Since(sent))
			}
		}(w)
	}
	wg.Wait()
	elapsed = time.Since(start)
	for _, own := range latencies {
		sorted = append(sorted, own...)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	return sorted, failures, elapsed
}

// PercentileMs is the p-th percentile (0 to 100) of an ascending list, in milliseconds; 0 for
// an empty list.
func PercentileMs(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(p/100*float64(len(sorted)-1))]) / float64(time.Millisecond)
}
