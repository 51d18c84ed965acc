// soak runs a 3-member swift-etcd cluster (or etcd) for MINUTES under a mixed clientv3 workload
// (puts, txns, linearizable and serializable ranges, leases kept alive and left to expire,
// watches that resume after a member dies, compactions) while a fault strikes every INTERVAL
// seconds: a member killed with SIGKILL and restarted, paused (SIGSTOP) for 15 s, or cut off
// from its peers for 20 s (its inbound peer traffic goes through a proxy here). It prints each
// member's memory and descriptors every 30 s, then checks: every acknowledged write is there
// (or a later one of its writer), every key of an expired lease is gone, the three watchers saw
// the same events, each once and in order, every acknowledged write among them, and the
// members agree (HashKV).
// Usage: soak BINARY MINUTES INTERVAL WORKDIR
package main

import (
	"checks"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	"go.etcd.io/etcd/mvcc/mvccpb"
)

type member struct {
	name               string
	client, peer, open int // open: the port peers dial (a proxy in front of peer)
	dir                string
	cmd                *exec.Cmd
	proxy              *proxy
}

var binary, workdir string
var members []*member

var handedOut = map[int]bool{}

// freePort picks a port below Linux's ephemeral range (32768 and up), so that no connection's
// local port can take it before its member binds it (one member in a run could not start
// because a peer connection's local port had taken its listening port), and never the same
// one twice.
func freePort(random *rand.Rand) int {
	for {
		port := 10000 + random.Intn(22000)
		if handedOut[port] {
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			handedOut[port] = true
			return port
		}
	}
}

func (m *member) start() {
	var cluster []string
	for _, o := range members {
		cluster = append(cluster, fmt.Sprintf("%s=http://127.0.0.1:%d", o.name, o.open))
	}
	log, _ := os.OpenFile(filepath.Join(workdir, m.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	m.cmd = exec.Command(binary, "--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", m.client), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", m.client),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", m.peer), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", m.open),
		"--initial-cluster", strings.Join(cluster, ","), "--initial-cluster-token", "soak", "--snapshot-count", "5000")
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		panic(err)
	}
	go m.cmd.Wait()
}

// proxy forwards a member's inbound peer connections; cut drops them and refuses new ones.
type proxy struct {
	target int
	cut    atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func (p *proxy) serve(port int) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		panic(err)
	}
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		if p.cut.Load() {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.target))
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { io.Copy(out, in); out.Close() }()
		go func() { io.Copy(in, out); in.Close() }()
	}
}

func (p *proxy) setCut(cut bool) {
	p.cut.Store(cut)
	if cut {
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
		p.mu.Unlock()
	}
}

func usage(pid int) (int64, int) {
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var rss int64
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kib, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			rss = kib / 1024
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return rss, len(fds)
}

// history of one writer's keys: the last acknowledged value, and values sent after it whose
// outcome is unknown (an error or a timeout: they may have been applied).
type keyState struct {
	acked    string
	ackedRev int64
	unknown  []string
}

type writer struct {
	mu   sync.Mutex
	keys map[string]*keyState
	revs []int64
}

func (w *writer) record(keys []string, value string, rev int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		s := w.keys[k]
		if s == nil {
			s = &keyState{}
			w.keys[k] = s
		}
		if err == nil {
			s.acked, s.ackedRev, s.unknown = value, rev, nil
		} else {
			s.unknown = append(s.unknown, value)
		}
	}
	if err == nil {
		w.revs = append(w.revs, rev)
	}
}

type event struct {
	rev int64
	key string
	put bool
}

func main() {
	binary = os.Args[1]
	minutes, _ := strconv.Atoi(os.Args[2])
	interval, _ := strconv.Atoi(os.Args[3])
	workdir = os.Args[4]
	random := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < 3; i++ {
		m := &member{name: fmt.Sprintf("s%d", i), client: freePort(random), peer: freePort(random), open: freePort(random)}
		m.dir = filepath.Join(workdir, m.name)
		m.proxy = &proxy{target: m.peer}
		go m.proxy.serve(m.open)
		members = append(members, m)
	}
	for _, m := range members {
		m.start()
	}
	defer func() {
		for _, m := range members {
			m.cmd.Process.Kill()
		}
	}()
	var endpoints []string
	for _, m := range members {
		endpoints = append(endpoints, fmt.Sprintf("127.0.0.1:%d", m.client))
	}
	newClient := func() *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
		if err != nil {
			panic(err)
		}
		return c
	}
	cli := newClient()
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var start int64
	for deadline := time.Now().Add(60 * time.Second); ; {
		r, err := cli.Put(context.Background(), "soak/start", "1")
		if err == nil {
			start = r.Header.Revision
			break
		}
		if time.Now().After(deadline) {
			fmt.Println("FAIL the cluster did not start:", err)
			os.Exit(1)
		}
		time.Sleep(time.Second)
	}
	for _, m := range members {
		status, cancelStatus := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := cli.Status(status, fmt.Sprintf("127.0.0.1:%d", m.client))
		cancelStatus()
		if err != nil {
			fmt.Printf("FAIL %s did not start: %v\n", m.name, err)
			os.Exit(1)
		}
	}
	fmt.Printf("soak: %d minutes, a fault every %d s, from revision %d\n", minutes, interval, start)

	var wg sync.WaitGroup
	var ops, failures atomic.Int64
	writers := make([]*writer, 4)
	for i := range writers {
		w := &writer{keys: map[string]*keyState{}}
		writers[i] = w
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := newClient()
			defer c.Close()
			for n := 0; ctx.Err() == nil; n++ {
				value := fmt.Sprintf("w%d-%d", i, n)
				keys := []string{fmt.Sprintf("soak/w%d/k%03d", i, n%200)}
				op, cancelOp := context.WithTimeout(ctx, 10*time.Second)
				var rev int64
				var err error
				if n%10 == 9 {
					keys = append(keys, fmt.Sprintf("soak/w%d/t%03d", i, n%50))
					var r *clientv3.TxnResponse
					r, err = c.Txn(op).If(clientv3.Compare(clientv3.Version(keys[0]), ">", -1)).
						Then(clientv3.OpPut(keys[0], value), clientv3.OpPut(keys[1], value)).Commit()
					if err == nil {
						rev = r.Header.Revision
					}
				} else {
					var r *clientv3.PutResponse
					r, err = c.Put(op, keys[0], value)
					if err == nil {
						rev = r.Header.Revision
					}
				}
				cancelOp()
				if ctx.Err() != nil && err != nil {
					err = errors.New("stopped")
				}
				w.record(keys, value, rev, err)
				ops.Add(1)
				if err != nil {
					failures.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}(i)
	}
	// Readers: linearizable and serializable ranges.
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := newClient()
			defer c.Close()
			for ctx.Err() == nil {
				op, cancelOp := context.WithTimeout(ctx, 5*time.Second)
				if i == 0 {
					c.Get(op, "soak/w0/", clientv3.WithPrefix(), clientv3.WithLimit(50))
				} else {
					c.Get(op, "soak/w1/", clientv3.WithPrefix(), clientv3.WithSerializable())
				}
				cancelOp()
				ops.Add(1)
			}
		}(i)
	}
	// Leases: one kept alive for the whole run, short ones left to expire with a key each.
	type expiring struct {
		key     string
		expires time.Time
	}
	var expiredMu sync.Mutex
	var expired []expiring
	var kept clientv3.LeaseID // set once by the goroutine below, read after the workload ends
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := newClient()
		defer c.Close()
		for ctx.Err() == nil {
			if r, err := c.Grant(ctx, 10); err == nil {
				kept = r.ID
				if ch, err := c.KeepAlive(ctx, r.ID); err == nil {
					c.Put(ctx, "soak/kept", "alive", clientv3.WithLease(r.ID))
					for range ch {
					}
				}
			}
			time.Sleep(time.Second)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := newClient()
		defer c.Close()
		for n := 0; ctx.Err() == nil; n++ {
			op, cancelOp := context.WithTimeout(ctx, 5*time.Second)
			r, err := c.Grant(op, 3)
			if err == nil {
				key := fmt.Sprintf("soak/lease/%d", n)
				if _, err := c.Put(op, key, "x", clientv3.WithLease(r.ID)); err == nil {
					expiredMu.Lock()
					expired = append(expired, expiring{key, time.Now().Add(3 * time.Second)})
					expiredMu.Unlock()
				}
			}
			cancelOp()
			time.Sleep(500 * time.Millisecond)
		}
	}()
	// Watchers: three, from the start, resuming after failures (clientv3 does). They ask for a
	// leader (WithRequireLeader, as Kubernetes does), so a member without one for three election
	// timeouts ends their stream with "no leader" (a member cut off from its peers does); like
	// Kubernetes, they then watch again from the revision after the last event they saw.
	watched := make([][]event, 3)
	var watchMu sync.Mutex
	progress := make([]int64, 3) // the last revision each watcher saw an event of
	watchErrors := make([]error, 3)
	var rewatched atomic.Int64
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := newClient()
			defer c.Close()
			progress[i] = start
			for ctx.Err() == nil {
				watchMu.Lock()
				from := progress[i] + 1
				watchMu.Unlock()
				var err error
				for response := range c.Watch(clientv3.WithRequireLeader(ctx), "soak/w", clientv3.WithPrefix(), clientv3.WithRev(from)) {
					if err = response.Err(); err != nil {
						break
					}
					watchMu.Lock()
					for _, e := range response.Events {
						watched[i] = append(watched[i], event{e.Kv.ModRevision, string(e.Kv.Key), e.Type == mvccpb.PUT})
						progress[i] = e.Kv.ModRevision
					}
					watchMu.Unlock()
				}
				if ctx.Err() != nil {
					return
				}
				if !errors.Is(err, rpctypes.ErrNoLeader) {
					watchErrors[i] = err
					return
				}
				rewatched.Add(1)
				time.Sleep(time.Second)
			}
		}(i)
	}
	// Compactions, behind the slowest watcher.
	wg.Add(1)
	go func() {
		defer wg.Done()
		var compacted int64
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(60 * time.Second):
			}
			watchMu.Lock()
			slowest := progress[0]
			for _, p := range progress {
				if p < slowest {
					slowest = p
				}
			}
			watchMu.Unlock()
			if target := slowest - 2000; target > compacted {
				op, cancelOp := context.WithTimeout(ctx, 10*time.Second)
				if _, err := cli.Compact(op, target); err == nil {
					compacted = target
				}
				cancelOp()
			}
		}
	}()

	// Faults and the memory curve.
	began := time.Now()
	end := began.Add(time.Duration(minutes) * time.Minute)
	nextFault := began.Add(time.Duration(interval) * time.Second)
	nextSample := began
	var samples [][3][2]int64
	faults := map[string]int{}
	for time.Now().Before(end) {
		if time.Now().After(nextSample) {
			var row [3][2]int64
			line := fmt.Sprintf("t=%4ds ops=%d", int(time.Since(began).Seconds()), ops.Load())
			for i, m := range members {
				rss, fds := usage(m.cmd.Process.Pid)
				row[i] = [2]int64{rss, int64(fds)}
				line += fmt.Sprintf("  %s rss=%dMiB fds=%d", m.name, rss, fds)
			}
			fmt.Println("CURVE", line)
			samples = append(samples, row)
			nextSample = nextSample.Add(30 * time.Second)
		}
		if time.Now().After(nextFault) {
			m := members[random.Intn(3)]
			switch random.Intn(3) {
			case 0:
				m.cmd.Process.Signal(syscall.SIGKILL)
				time.Sleep(5 * time.Second)
				m.start()
				faults["kill -9"]++
				fmt.Printf("FAULT t=%ds kill -9 %s, restarted after 5 s\n", int(time.Since(began).Seconds()), m.name)
			case 1:
				m.cmd.Process.Signal(syscall.SIGSTOP)
				time.Sleep(15 * time.Second)
				m.cmd.Process.Signal(syscall.SIGCONT)
				faults["pause"]++
				fmt.Printf("FAULT t=%ds paused %s for 15 s\n", int(time.Since(began).Seconds()), m.name)
			case 2:
				m.proxy.setCut(true)
				time.Sleep(20 * time.Second)
				m.proxy.setCut(false)
				faults["partition"]++
				fmt.Printf("FAULT t=%ds cut %s off from its peers for 20 s\n", int(time.Since(began).Seconds()), m.name)
			}
			nextFault = time.Now().Add(time.Duration(interval) * time.Second)
		}
		time.Sleep(time.Second)
	}
	// The kept lease's key, while it is still kept alive.
	keptErr := errors.New("no lease was granted")
	if kept != 0 {
		op, cancelOp := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := cli.Get(op, "soak/kept")
		cancelOp()
		keptErr = err
		if err == nil && (len(r.Kvs) != 1 || r.Kvs[0].Lease != int64(kept)) {
			keptErr = fmt.Errorf("%v", r.Kvs)
		}
	}
	cancel()
	wg.Wait()
	fmt.Printf("FIGURE %d operations (%d failed or unknown), faults %v, watches reopened after \"no leader\" %d\n", ops.Load(), failures.Load(), faults, rewatched.Load())

	// Checks, once the cluster is whole and quiet.
	time.Sleep(10 * time.Second)
	check := newClient()
	defer check.Close()
	get := func(key string) (*clientv3.GetResponse, error) {
		op, cancelOp := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancelOp()
		return check.Get(op, key)
	}
	var lost []string
	acknowledged := 0
	for _, w := range writers {
		for key, s := range w.keys {
			if s.ackedRev == 0 {
				continue
			}
			acknowledged++
			r, err := get(key)
			if err != nil {
				lost = append(lost, fmt.Sprintf("%s: %v", key, err))
				continue
			}
			got := ""
			if len(r.Kvs) == 1 {
				got = string(r.Kvs[0].Value)
			}
			ok := got == s.acked && r.Kvs[0].ModRevision >= s.ackedRev
			for _, u := range s.unknown {
				ok = ok || got == u
			}
			if !ok {
				lost = append(lost, fmt.Sprintf("%s = %q, acknowledged %q at %d", key, got, s.acked, s.ackedRev))
			}
		}
	}
	if len(lost) > 0 {
		checks.Check(fmt.Sprintf("the last acknowledged write of each of %d keys is there", acknowledged), fmt.Errorf("%d wrong: %v", len(lost), lost[:smaller(5, len(lost))]))
	} else {
		checks.Check(fmt.Sprintf("the last acknowledged write of each of %d keys is there", acknowledged), nil)
	}
	var alive []string
	expiredMu.Lock()
	for _, e := range expired {
		if time.Since(e.expires) > 20*time.Second {
			if r, err := get(e.key); err == nil && len(r.Kvs) > 0 {
				alive = append(alive, e.key)
			}
		}
	}
	expiredMu.Unlock()
	checks.Check(fmt.Sprintf("the keys of %d expired leases are gone", len(expired)), errorIf(len(alive) > 0, "still there: %v", alive))
	checks.Check("the key of the lease kept alive through the faults is there", keptErr)

	// Watchers: the same events, once each, in order; every acknowledged write among them.
	var watchProblem error
	for i := range watched {
		if watchErrors[i] != nil {
			watchProblem = fmt.Errorf("watcher %d ended: %v", i, watchErrors[i])
		}
		for j := 1; j < len(watched[i]); j++ {
			a, b := watched[i][j-1], watched[i][j]
			if b.rev < a.rev || (b.rev == a.rev && b.key <= a.key) {
				watchProblem = fmt.Errorf("watcher %d: %v after %v", i, b, a)
				break
			}
		}
	}
	common := smaller(len(watched[0]), smaller(len(watched[1]), len(watched[2])))
	for j := 0; j < common && watchProblem == nil; j++ {
		if watched[0][j] != watched[1][j] || watched[1][j] != watched[2][j] {
			watchProblem = fmt.Errorf("watchers differ at event %d: %v %v %v", j, watched[0][j], watched[1][j], watched[2][j])
		}
	}
	seen := map[int64]bool{}
	var last int64
	for _, e := range watched[0] {
		seen[e.rev] = true
		last = e.rev
	}
	missing := 0
	for _, w := range writers {
		for _, rev := range w.revs {
			if rev <= last && !seen[rev] {
				missing++
			}
		}
	}
	if watchProblem == nil && missing > 0 {
		watchProblem = fmt.Errorf("%d acknowledged writes missing from the watchers' events", missing)
	}
	checks.Check(fmt.Sprintf("3 watchers saw the same %d events, once each and in order, every acknowledged write among them", common), watchProblem)

	// The members agree.
	var hashes []string
	var revision int64
	for _, e := range endpoints {
		op, cancelOp := context.WithTimeout(context.Background(), 10*time.Second)
		if revision == 0 {
			if r, err := check.Get(op, "soak/start"); err == nil {
				revision = r.Header.Revision
			}
		}
		r, err := check.HashKV(op, e, revision)
		cancelOp()
		if err != nil {
			hashes = append(hashes, err.Error())
		} else {
			hashes = append(hashes, strconv.FormatUint(uint64(r.Hash), 10))
		}
	}
	checks.Check(fmt.Sprintf("the members agree at revision %d (HashKV %v)", revision, hashes), errorIf(hashes[0] != hashes[1] || hashes[1] != hashes[2], "they differ"))

	// Flat memory and descriptors: the last third against the second.
	if len(samples) >= 6 {
		third := len(samples) / 3
		for i, m := range members {
			var midRSS, lateRSS, midFDs, lateFDs int64
			for _, s := range samples[third : 2*third] {
				midRSS, midFDs = larger(midRSS, s[i][0]), larger(midFDs, s[i][1])
			}
			for _, s := range samples[2*third:] {
				lateRSS, lateFDs = larger(lateRSS, s[i][0]), larger(lateFDs, s[i][1])
			}
			fmt.Printf("FIGURE %s: highest RSS %d MiB in the second third, %d MiB in the last; descriptors %d, %d\n", m.name, midRSS, lateRSS, midFDs, lateFDs)
			checks.Check(fmt.Sprintf("%s's memory and descriptors are flat after warm-up", m.name),
				errorIf(lateRSS > midRSS*5/4+16 || lateFDs > midFDs+16, "RSS %d → %d MiB, descriptors %d → %d", midRSS, lateRSS, midFDs, lateFDs))
		}
	}
	checks.Finish("soak")
}

func errorIf(failed bool, format string, args ...any) error {
	if failed {
		return fmt.Errorf(format, args...)
	}
	return nil
}

func smaller(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func larger(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
