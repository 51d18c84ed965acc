// goload is a load client built on Go clientv3, the library most etcd users' programs use: it
// runs put, range or txn-put requests from -clients goroutines spread over -conns clients
// (connections), as etcd's own benchmark tool does, and prints one RESULT line in the format of
// swift-etcd-benchmark, so scripts/bench-compare.sh can show figures that do not depend on our
// own client's batching.
//
//	goload -endpoints 127.0.0.1:2379 -op put -clients 256 -conns 16 -total 50000 -key-space-size 100000
package main

import (
	"checks"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints")
	op := flag.String("op", "put", "put, range or txn-put")
	clients := flag.Int("clients", 1, "concurrent requesters")
	conns := flag.Int("conns", 1, "connections they share")
	total := flag.Int("total", 10000, "requests in all")
	keySize := flag.Int("key-size", 8, "bytes per key (put, txn-put)")
	keySpace := flag.Int("key-space-size", 1, "distinct keys (put, txn-put)")
	valueSize := flag.Int("val-size", 8, "bytes per value")
	txnOps := flag.Int("txn-ops", 1, "puts per transaction (txn-put)")
	rangeKey := flag.String("key", "foo", "the key read (range)")
	consistency := flag.String("consistency", "l", "l (linearizable) or s (serializable) (range)")
	flag.Parse()

	connections := make([]*clientv3.Client, *conns)
	for i := range connections {
		client, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, "goload:", err)
			os.Exit(1)
		}
		defer client.Close()
		connections[i] = client
	}
	value := strings.Repeat("v", *valueSize)
	keyNumbered := func(n int) string {
		key := make([]byte, *keySize)
		binary.PutVarint(key, int64(n))
		return string(key)
	}
	// request sends the n-th request.
	request := func(client *clientv3.Client, random *rand.Rand, n int) error {
		ctx := context.Background()
		switch *op {
		case "put":
			_, err := client.Put(ctx, keyNumbered(random.Intn(*keySpace)), value)
			return err
		case "range":
			var options []clientv3.OpOption
			if *consistency == "s" {
				options = append(options, clientv3.WithSerializable())
			}
			_, err := client.Get(ctx, *rangeKey, options...)
			return err
		case "txn-put":
			// Consecutive keys, as etcd's benchmark picks them: one transaction never writes a
			// key twice (etcd refuses that).
			puts := make([]clientv3.Op, *txnOps)
			for j := range puts {
				puts[j] = clientv3.OpPut(keyNumbered((n*(*txnOps)+j)%*keySpace), value)
			}
			_, err := client.Txn(ctx).Then(puts...).Commit()
			return err
		}
		fmt.Fprintln(os.Stderr, "goload: unknown -op", *op)
		os.Exit(2)
		return nil
	}

	randoms := make([]*rand.Rand, *clients)
	for c := range randoms {
		randoms[c] = rand.New(rand.NewSource(int64(c) + 1))
	}
	all, errors, elapsed := checks.Timed(*clients, *total, func(c, n int) error {
		return request(connections[c%len(connections)], randoms[c], n)
	})
	fmt.Printf("RESULT op=%s count=%d errors=%d qps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f\n",
		*op, len(all), errors, float64(len(all))/elapsed.Seconds(), checks.PercentileMs(all, 50), checks.PercentileMs(all, 90),
		checks.PercentileMs(all, 99), checks.PercentileMs(all, 99.9))
}
