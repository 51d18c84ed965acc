// gatewayload puts keys through etcd's JSON gateway (POST /v3/kv/put) from concurrent
// workers on kept-alive HTTP/1.1 connections, and prints the rate and latency percentiles:
// the same HTTP client against etcd and swift-etcd (scripts/gateway-bench.sh).
package main

import (
	"bytes"
	"checks"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	endpoint := flag.String("endpoint", "http://127.0.0.1:2379", "client URL")
	total := flag.Int("total", 20000, "puts in all")
	clients := flag.Int("clients", 16, "concurrent workers, one connection each")
	size := flag.Int("val-size", 256, "value bytes")
	flag.Parse()

	value := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'v'}, *size))
	transport := &http.Transport{MaxIdleConnsPerHost: *clients, MaxConnsPerHost: *clients}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	all, failures, elapsed := checks.Timed(*clients, *total, func(_, i int) error {
		key := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("k%08d", i)))
		body, _ := json.Marshal(map[string]string{"key": key, "value": value})
		response, err := client.Post(*endpoint+"/v3/kv/put", "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, response.Body)
		response.Body.Close()
		if err == nil && response.StatusCode != 200 {
			err = fmt.Errorf("status %d", response.StatusCode)
		}
		return err
	})
	if len(all) == 0 {
		fmt.Println("no successful puts")
		os.Exit(1)
	}
	fmt.Printf("puts=%d failures=%d seconds=%.2f rate=%.0f p50=%.2fms p99=%.2fms\n",
		len(all), failures, elapsed.Seconds(), float64(len(all))/elapsed.Seconds(), checks.PercentileMs(all, 50), checks.PercentileMs(all, 99))
	if failures > 0 {
		os.Exit(1)
	}
}
