// defragbench measures what a defragmentation costs the clients of a member: it fills the
// backend (-fill-mib of values), deletes half the keys, compacts, then sends puts at a steady
// -rate (open loop: each put leaves on time whatever the previous ones are doing) for -idle
// seconds, then again while Maintenance.Defragment runs, and prints the put latency
// percentiles idle and during the defragmentation, the failed puts, how long it took and the
// bytes it gave back. The same Go clientv3 against etcd and swift-etcd (scripts/defrag-bench.sh).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:2379", "client endpoint")
	fillMiB := flag.Int("fill-mib", 1024, "MiB of values written before deleting half")
	valueKiB := flag.Int("value-kib", 100, "size of each filling value")
	rate := flag.Int("rate", 1000, "puts per second while measuring")
	idle := flag.Duration("idle", 5*time.Second, "how long to measure before the defragmentation")
	flag.Parse()

	client, err := clientv3.New(clientv3.Config{Endpoints: []string{*endpoint}, DialTimeout: 5 * time.Second,
		MaxCallSendMsgSize: 4 << 20})
	check(err)
	defer client.Close()
	ctx := context.Background()

	// Fill with 8 concurrent writers, then delete every other key and compact.
	value := strings.Repeat("f", *valueKiB*1024)
	keys := *fillMiB * 1024 / *valueKiB
	var wg sync.WaitGroup
	fillStart := time.Now()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < keys; i += 8 {
				_, err := client.Put(ctx, fmt.Sprintf("fill/%07d", i), value)
				check(err)
			}
		}(w)
	}
	wg.Wait()
	fmt.Printf("filled %d keys of %d KiB in %.1f s\n", keys, *valueKiB, time.Since(fillStart).Seconds())
	var last int64
	for i := 0; i < keys; i += 2 {
		response, err := client.Delete(ctx, fmt.Sprintf("fill/%07d", i))
		check(err)
		last = response.Header.Revision
	}
	_, err = client.Compact(ctx, last, clientv3.WithCompactPhysical())
	check(err)
	before := status(client, *endpoint)
	fmt.Printf("after deleting half and compacting: db %d bytes, in use %d bytes\n", before.DbSize, before.DbSizeInUse)

	idleLatencies, idleFailed := steady(client, *rate, *idle, nil)
	var defragTook time.Duration
	duringLatencies, duringFailed := steady(client, *rate, 0, func() {
		start := time.Now()
		_, err := client.Defragment(context.Background(), *endpoint)
		check(err)
		defragTook = time.Since(start)
	})
	after := status(client, *endpoint)
	fmt.Printf("defragment took %.2f s and gave back %d bytes (db %d -> %d bytes)\n",
		defragTook.Seconds(), before.DbSize-after.DbSize, before.DbSize, after.DbSize)
	report("idle", idleLatencies, idleFailed)
	report("during defrag", duringLatencies, duringFailed)
	fmt.Printf("RESULT defrag_seconds=%.3f freed_bytes=%d idle_p50_ms=%.2f idle_p99_ms=%.2f during_p50_ms=%.2f during_p99_ms=%.2f during_max_ms=%.2f failed=%d\n",
		defragTook.Seconds(), before.DbSize-after.DbSize, ms(percentile(idleLatencies, 50)), ms(percentile(idleLatencies, 99)),
		ms(percentile(duringLatencies, 50)), ms(percentile(duringLatencies, 99)), ms(percentile(duringLatencies, 100)),
		idleFailed+duringFailed)
}

// steady sends puts at rate for duration (or, with work, from 1 s before work starts until
// 1 s after it ends) and returns their latencies and how many failed.
func steady(client *clientv3.Client, rate int, duration time.Duration, work func()) ([]time.Duration, int) {
	var mu sync.Mutex
	var latencies []time.Duration
	failed := 0
	var wg sync.WaitGroup
	done := make(chan struct{})
	if work != nil {
		go func() {
			time.Sleep(time.Second)
			work()
			time.Sleep(time.Second)
			close(done)
		}()
	} else {
		go func() { time.Sleep(duration); close(done) }()
	}
	ticker := time.NewTicker(time.Second / time.Duration(rate))
	defer ticker.Stop()
	value := strings.Repeat("v", 256)
	for i := 0; ; i++ {
		select {
		case <-done:
			wg.Wait()
			return latencies, failed
		case <-ticker.C:
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			_, err := client.Put(ctx, fmt.Sprintf("steady/%04d", i%1000), value)
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			latencies = append(latencies, took)
		}(i)
	}
}

func status(client *clientv3.Client, endpoint string) *clientv3.StatusResponse {
	response, err := client.Status(context.Background(), endpoint)
	check(err)
	return response
}

func report(name string, latencies []time.Duration, failed int) {
	fmt.Printf("%-14s %6d puts  p50 %7.2f ms  p99 %7.2f ms  max %8.2f ms  failed %d\n", name, len(latencies),
		ms(percentile(latencies, 50)), ms(percentile(latencies, 99)), ms(percentile(latencies, 100)), failed)
}

func percentile(latencies []time.Duration, p int) time.Duration {
	if len(latencies) == 0 {
		return 0
	}
	sorted := append([]time.Duration(nil), latencies...)
	sort.Slice(sorted, func(a, b int) bool { return sorted[a] < sorted[b] })
	index := (len(sorted)*p + 99) / 100
	if index > 0 {
		index--
	}
	return sorted[index]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "defragbench:", err)
		os.Exit(1)
	}
}
