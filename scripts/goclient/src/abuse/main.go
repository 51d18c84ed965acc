// abuse drives a server the way hostile or broken clients do, with raw HTTP/2 frames (Go's
// x/net/http2 framer) beside a well-behaved clientv3, and reads the server's memory and
// descriptors from /proc. The server must run with --max-concurrent-streams 8
// --grpc-keepalive-interval 2s --grpc-keepalive-timeout 1s.
// Usage: abuse ENDPOINT SERVER_PID IDLE_CONNECTIONS strict|reference
// Prints PASS/FAIL lines, FIGURE lines (bounds measured) and a closing count; exits 1 on a
// failure. With `reference` (the real etcd), a stuck watch stream's memory is only a figure:
// etcd buffers what is written past it (etcd #16839).
package main

import (
	"checks"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"golang.org/x/net/http2"
	"rawh2"
)

const streamLimit = 8

var endpoint string
var serverPID int

func main() {
	endpoint = os.Args[1]
	serverPID, _ = strconv.Atoi(os.Args[2])
	idle, _ := strconv.Atoi(os.Args[3])
	strict := os.Args[4] == "strict"
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("FAIL dial:", err)
		os.Exit(1)
	}
	defer cli.Close()

	checks.Check("the server advertises SETTINGS_MAX_CONCURRENT_STREAMS 8", advertisedLimit())
	checks.Check("a stream past the limit is refused, other connections are served, and a call is served once a stream ends", streamsPastTheLimit(cli))
	checks.Check("a ping flood ends the connection with GOAWAY ENHANCE_YOUR_CALM too_many_pings", pingFlood())
	checks.Check("a connection that answers no ping is closed within interval + timeout", unansweredPings())
	checks.Check("a connection that answers pings stays open", answeredPings())
	checks.Check(fmt.Sprintf("%d idle connections: clientv3 still served, descriptors given back", idle), idleConnections(cli, idle))
	checks.Check("a watch stream whose client never reads costs a bounded backlog", neverReads(cli, strict))
	checks.Check("2000 connections opened and closed: descriptors given back", churn(cli, 2000))
	slowPreface()
	checks.Finish("abuse")
}

func rangeRequest(key string) []byte { return rawh2.Field(1, []byte(key)) }

func watchCreate(key, end string) []byte {
	return rawh2.Field(1, append(rawh2.Field(1, []byte(key)), rawh2.Field(2, []byte(end))...))
}

func advertisedLimit() error {
	r, err := rawh2.Dial(endpoint, 65535)
	if err != nil {
		return err
	}
	defer r.Conn.Close()
	values, err := r.Settings()
	if err != nil {
		return err
	}
	if got, ok := values[http2.SettingMaxConcurrentStreams]; !ok || got != streamLimit {
		return fmt.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d (sent: %v)", got, ok)
	}
	return nil
}

func streamsPastTheLimit(cli *clientv3.Client) error {
	r, err := rawh2.Connect(endpoint, 65535)
	if err != nil {
		return err
	}
	defer r.Conn.Close()
	var watches []uint32
	for i := 0; i < streamLimit; i++ {
		id, err := r.Open("/etcdserverpb.Watch/Watch", nil, false)
		if err != nil {
			return err
		}
		watches = append(watches, id)
	}
	extra, err := r.Open("/etcdserverpb.KV/Range", rangeRequest("a"), true)
	if err != nil {
		return err
	}
	frame, err := r.ReadUntil(5*time.Second, true, func(f http2.Frame) bool {
		rst, ok := f.(*http2.RSTStreamFrame)
		_, away := f.(*http2.GoAwayFrame)
		return away || ok && rst.StreamID == extra
	})
	if err != nil {
		return fmt.Errorf("no RST_STREAM or GOAWAY for stream %d past the limit: %v", extra, err)
	}
	connectionRefused := false
	switch frame := frame.(type) {
	case *http2.RSTStreamFrame:
		if frame.ErrCode != http2.ErrCodeRefusedStream {
			return fmt.Errorf("stream past the limit reset with %v", frame.ErrCode)
		}
		fmt.Println("FIGURE a stream past the limit: RST_STREAM REFUSED_STREAM, the connection goes on")
	case *http2.GoAwayFrame:
		if frame.ErrCode != http2.ErrCodeProtocol {
			return fmt.Errorf("GOAWAY %v for a stream past the limit", frame.ErrCode)
		}
		fmt.Println("FIGURE a stream past the limit: GOAWAY PROTOCOL_ERROR, the connection ends")
		connectionRefused = true
	}
	// Another connection is not limited by this one's streams.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "abuse/limit", "x"); err != nil {
		return fmt.Errorf("clientv3 put while another connection holds its limit: %v", err)
	}
	if connectionRefused {
		if r, err = rawh2.Connect(endpoint, 65535); err != nil {
			return err
		}
		defer r.Conn.Close()
	} else if err := r.Framer.WriteRSTStream(watches[0], http2.ErrCodeCancel); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	again, err := r.Open("/etcdserverpb.KV/Range", rangeRequest("a"), true)
	if err != nil {
		return err
	}
	status, _, err := r.Status(again, 5*time.Second)
	if err != nil || status != "0" {
		return fmt.Errorf("the call after a stream ended: %q %v", status, err)
	}
	return nil
}

func pingFlood() error {
	r, err := rawh2.Connect(endpoint, 65535)
	if err != nil {
		return err
	}
	defer r.Conn.Close()
	if _, err := r.Open("/etcdserverpb.Watch/Watch", nil, false); err != nil {
		return err
	}
	for i := 0; i < 6; i++ {
		if err := r.Framer.WritePing(false, [8]byte{byte(i)}); err != nil {
			return err
		}
	}
	frame, err := r.ReadUntil(5*time.Second, false, func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	if err != nil {
		return fmt.Errorf("no GOAWAY: %v", err)
	}
	away := frame.(*http2.GoAwayFrame)
	if away.ErrCode != http2.ErrCodeEnhanceYourCalm || string(away.DebugData()) != "too_many_pings" {
		return fmt.Errorf("GOAWAY %v %q", away.ErrCode, away.DebugData())
	}
	return nil
}

func unansweredPings() error {
	r, err := rawh2.Connect(endpoint, 65535)
	if err != nil {
		return err
	}
	defer r.Conn.Close()
	start := time.Now()
	_, err = r.ReadUntil(15*time.Second, false, func(http2.Frame) bool { return false })
	elapsed := time.Since(start)
	var timeout net.Error
	if errors.As(err, &timeout) && timeout.Timeout() {
		return fmt.Errorf("still open after %v", elapsed.Round(time.Millisecond))
	}
	fmt.Printf("FIGURE a connection that answers no ping: closed after %v (interval 2 s + timeout 1 s)\n", elapsed.Round(100*time.Millisecond))
	if elapsed < 2*time.Second || elapsed > 8*time.Second {
		return fmt.Errorf("closed after %v", elapsed)
	}
	return nil
}

func answeredPings() error {
	r, err := rawh2.Connect(endpoint, 65535)
	if err != nil {
		return err
	}
	defer r.Conn.Close()
	_, err = r.ReadUntil(7*time.Second, true, func(http2.Frame) bool { return false })
	var timeout net.Error
	if errors.As(err, &timeout) && timeout.Timeout() {
		return nil
	}
	return fmt.Errorf("ended: %v", err)
}

// usage reads the server's resident memory (bytes) and open descriptors.
func usage() (int64, int) {
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", serverPID))
	var rss int64
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			fields := strings.Fields(line)
			kib, _ := strconv.ParseInt(fields[1], 10, 64)
			rss = kib * 1024
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", serverPID))
	return rss, len(fds)
}

// settled waits until the server's descriptors drop to `baseline` (give or take `slack`).
func settled(baseline, slack int, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		_, fds := usage()
		if fds <= baseline+slack {
			return fds, nil
		}
		if time.Now().After(deadline) {
			return fds, fmt.Errorf("%d descriptors open, %d before", fds, baseline)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func idleConnections(cli *clientv3.Client, count int) error {
	rssBefore, fdsBefore := usage()
	var conns []*rawh2.Conn
	var wg sync.WaitGroup
	defer func() {
		for _, r := range conns {
			r.Conn.Close()
		}
		wg.Wait()
	}()
	for i := 0; i < count; i++ {
		r, err := rawh2.Connect(endpoint, 65535)
		if err != nil {
			return fmt.Errorf("connection %d: %v", i, err)
		}
		conns = append(conns, r)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.ReadUntil(time.Hour, true, func(http2.Frame) bool { return false })
		}()
	}
	time.Sleep(3 * time.Second)
	rssAfter, fdsAfter := usage()
	fmt.Printf("FIGURE %d idle connections: server RSS %+.1f MiB (%d bytes each), descriptors %+d\n", count,
		float64(rssAfter-rssBefore)/(1<<20), (rssAfter-rssBefore)/int64(count), fdsAfter-fdsBefore)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "abuse/idle", "x"); err != nil {
		return fmt.Errorf("clientv3 put among idle connections: %v", err)
	}
	if r, err := cli.Get(ctx, "abuse/idle"); err != nil || len(r.Kvs) != 1 {
		return fmt.Errorf("clientv3 get among idle connections: %v", err)
	}
	for _, r := range conns {
		r.Conn.Close()
	}
	conns = nil
	_, err := settled(fdsBefore, 5, 10*time.Second)
	return err
}

// neverReads writes 32 MiB of events (8 KiB values over 16 keys, compacted as they go) with no
// watcher until the server's memory is flat, then past a watch stream whose client never reads
// (its window is 0) and a well-behaved clientv3 watcher: the server's memory may grow by the
// stuck stream's backlog, not by what was written past it.
func neverReads(cli *clientv3.Client, strict bool) error {
	// Up to 9 rounds of 4,000 puts of 8 KiB: a debug build (as CI runs) takes about 25 s a round.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	const puts = 4000
	value := strings.Repeat("v", 8192)
	var compacted int64
	fill := func(prefix string) error {
		start := time.Now()
		for i := 0; i < puts; i++ {
			// One put held 30 s is a stall, not a slow machine: said apart from running out of
			// the whole check's time.
			putCtx, cancelPut := context.WithTimeout(ctx, 30*time.Second)
			sent := time.Now()
			put, err := cli.Put(putCtx, fmt.Sprintf("%s%d", prefix, i%16), value)
			cancelPut()
			if err != nil {
				return fmt.Errorf("put %d of %s (%.1f s into these puts) failed after %.1f s: %v",
					i, prefix, time.Since(start).Seconds(), time.Since(sent).Seconds(), err)
			}
			if i%1000 == 999 && put.Header.Revision-2000 > compacted {
				compacted = put.Header.Revision - 2000
				if _, err := cli.Compact(ctx, compacted); err != nil {
					return fmt.Errorf("compact: %v", err)
				}
			}
		}
		return nil
	}
	// Until the server's memory is flat: it keeps the Raft log since its last snapshot (every
	// 10,000 entries) and 5,000 entries more for slow followers, 120 MiB of these values.
	rssBefore, _ := usage()
	warmStart := time.Now()
	for round := 0; round < 8; round++ {
		if err := fill("abuse/warm/"); err != nil {
			return err
		}
		rss, _ := usage()
		flat := rss-rssBefore < 2<<20
		rssBefore = rss
		if flat && round >= 3 {
			break
		}
	}
	fmt.Printf("FIGURE warm-up (until the server's memory is flat): %.0f s\n", time.Since(warmStart).Seconds())

	r, err := rawh2.Connect(endpoint, 0)
	if err != nil {
		return err
	}
	defer r.Conn.Close()
	id, err := r.Open("/etcdserverpb.Watch/Watch", nil, false)
	if err != nil {
		return err
	}
	message := watchCreate("abuse/stuck/", "abuse/stuck0")
	if err := r.Framer.WriteData(id, false, rawh2.Frame(message)); err != nil {
		return err
	}
	received := make(chan int, 1)
	watch := cli.Watch(ctx, "abuse/stuck/", clientv3.WithPrefix())
	go func() {
		events := 0
		for response := range watch {
			events += len(response.Events)
			if events >= puts {
				break
			}
		}
		received <- events
	}()
	time.Sleep(200 * time.Millisecond)
	if err := fill("abuse/stuck/"); err != nil {
		return err
	}
	var events int
	select {
	case events = <-received:
	case <-time.After(60 * time.Second):
		return errors.New("the well-behaved watcher did not get every event within 60 s")
	}
	rssAfter, _ := usage()
	fmt.Printf("FIGURE a watch stream that never reads, %d events of 8 KiB (%.0f MiB) written past it: server RSS %+.1f MiB (once the same writes with no watcher left it flat)\n",
		puts, float64(puts*8192)/(1<<20), float64(rssAfter-rssBefore)/(1<<20))
	if events != puts {
		return fmt.Errorf("the well-behaved watcher got %d events of %d", events, puts)
	}
	if growth := rssAfter - rssBefore; strict && growth > 16<<20 {
		return fmt.Errorf("server RSS grew %.1f MiB", float64(growth)/(1<<20))
	}
	return nil
}

func churn(cli *clientv3.Client, count int) error {
	_, fdsBefore := usage()
	start := time.Now()
	for i := 0; i < count; i++ {
		r, err := rawh2.Dial(endpoint, 65535)
		if err != nil {
			return fmt.Errorf("connection %d: %v", i, err)
		}
		if i%2 == 0 {
			// Half make a call first; the rest leave at once.
			if _, err := r.Settings(); err == nil {
				id, _ := r.Open("/etcdserverpb.KV/Range", rangeRequest("abuse/idle"), true)
				if status, _, err := r.Status(id, 5*time.Second); err != nil || status != "0" {
					r.Conn.Close()
					return fmt.Errorf("call on connection %d: %q %v", i, status, err)
				}
			}
		}
		r.Conn.Close()
	}
	fmt.Printf("FIGURE %d connections opened and closed in %v\n", count, time.Since(start).Round(time.Millisecond))
	_, err := settled(fdsBefore, 5, 10*time.Second)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = cli.Get(ctx, "abuse/idle")
	}
	return err
}

// slowPreface reports how long a server keeps a connection that sends its preface one byte
// every 2 s (a figure: gRPC-Go allows 120 s).
func slowPreface() {
	conn, err := net.DialTimeout("tcp", endpoint, 5*time.Second)
	if err != nil {
		checks.Check("a slow preface connection", err)
		return
	}
	defer conn.Close()
	start := time.Now()
	preface := []byte(http2.ClientPreface)
	for i := 0; i < len(preface); i++ {
		if _, err := conn.Write(preface[i : i+1]); err != nil {
			break
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == io.EOF || (err != nil && !isTimeout(err)) {
			fmt.Printf("FIGURE a preface sent one byte every 2 s: closed after %v\n", time.Since(start).Round(time.Second))
			return
		}
		if time.Since(start) > 30*time.Second {
			break
		}
	}
	fmt.Printf("FIGURE a preface sent one byte every 2 s: still open after %v\n", time.Since(start).Round(time.Second))
}

func isTimeout(err error) bool {
	var timeout net.Error
	return errors.As(err, &timeout) && timeout.Timeout()
}
