// largemessages drives a server with the Go clientv3 library (default options, as a new user
// would) through large values, responses well past gRPC's default 4 MiB, a watch catching up
// over many MiB, and oversized requests followed by more requests on the same connection.
// Usage: largemessages ENDPOINT [TOTAL_MIB]; TOTAL_MIB (default 0) reads that much more on the
// one connection at the end. Prints PASS/FAIL lines and a closing count; exits 1 on a failure.
package main

import (
	"bytes"
	"checks"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"go.etcd.io/etcd/clientv3"
)

const mib = 1024 * 1024

func main() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("FAIL dial:", err)
		os.Exit(1)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	_, err = cli.Put(ctx, "big/over", string(bytes.Repeat([]byte("x"), 1600*1024)))
	if err == nil || err.Error() != "etcdserver: request is too large" {
		checks.Check("a 1.6 MiB put is refused as too large", fmt.Errorf("got %v", err))
	} else {
		checks.Check("a 1.6 MiB put is refused as too large", nil)
	}

	const keys = 12
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, mib) }
	var putErr error
	for i := 0; i < keys && putErr == nil; i++ {
		_, putErr = cli.Put(ctx, fmt.Sprintf("big/%02d", i), string(value(i)))
	}
	checks.Check(fmt.Sprintf("%d puts of 1 MiB after the refused one, same connection", keys), putErr)

	var getErr error
	for i := 0; i < keys && getErr == nil; i++ {
		r, err := cli.Get(ctx, fmt.Sprintf("big/%02d", i))
		if err != nil {
			getErr = err
		} else if len(r.Kvs) != 1 || !bytes.Equal(r.Kvs[0].Value, value(i)) {
			getErr = fmt.Errorf("key %d: %d kvs", i, len(r.Kvs))
		}
	}
	checks.Check("each 1 MiB value reads back", getErr)

	r, err := cli.Get(ctx, "big/", clientv3.WithPrefix())
	if err == nil && (len(r.Kvs) != keys || !bytes.Equal(r.Kvs[keys-1].Value, value(keys-1))) {
		err = fmt.Errorf("%d kvs", len(r.Kvs))
	}
	checks.Check(fmt.Sprintf("one range answer of %d MiB", keys), err)

	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	events := 0
	var watchErr error
	for resp := range cli.Watch(wctx, "big/", clientv3.WithPrefix(), clientv3.WithRev(1)) {
		if resp.Err() != nil {
			watchErr = resp.Err()
			break
		}
		for _, ev := range resp.Events {
			if !bytes.Equal(ev.Kv.Value, value(events)) {
				watchErr = fmt.Errorf("event %d: wrong value for %s", events, ev.Kv.Key)
			}
			events++
		}
		if events >= keys || watchErr != nil {
			break
		}
	}
	wcancel()
	if watchErr == nil && events != keys {
		watchErr = fmt.Errorf("%d events of %d", events, keys)
	}
	checks.Check(fmt.Sprintf("a watch from revision 1 catches up over %d MiB", keys), watchErr)

	var roundErr error
	for round := 0; round < 3 && roundErr == nil; round++ {
		_, err = cli.Put(ctx, "big/over", string(bytes.Repeat([]byte("x"), 1900*1024)))
		if err == nil || err.Error() != "etcdserver: request is too large" {
			roundErr = fmt.Errorf("a 1.9 MiB put: %v", err)
		} else if r, err = cli.Get(ctx, "big/00"); err != nil {
			roundErr = err
		}
	}
	checks.Check("refused oversized puts alternating with reads, same connection", roundErr)

	totalMiB := 0
	if len(os.Args) > 2 {
		totalMiB, _ = strconv.Atoi(os.Args[2])
	}
	if totalMiB > 0 {
		read := 0
		start := time.Now()
		for read < totalMiB*mib && err == nil {
			r, err = cli.Get(ctx, "big/", clientv3.WithPrefix())
			if err == nil {
				read += keys * mib
			}
		}
		checks.Check(fmt.Sprintf("%d MiB read on one connection (%.0f MiB/s)", read/mib, float64(read)/mib/time.Since(start).Seconds()), err)
	}
	checks.Finish("largemessages")
}
