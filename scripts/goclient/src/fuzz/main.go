// fuzz sends a server mutated gRPC requests for every etcd RPC and random HTTP/2 frame
// sequences, from a fixed seed, for a given time. Every request must end (trailers, RST_STREAM,
// GOAWAY or a closed connection) within 5 s; a refused request must not move the store's
// revision; the server must stay up and keep answering; its descriptors must come back.
// Inputs that broke a rule are written to CRASHERS; inputs that drew an answer not seen before
// (RPC, status, the message's first words) are added to CORPUS, which seeds later runs.
// Usage: fuzz ENDPOINT SERVER_PID SECONDS SEED CORPUS CRASHERS, or fuzz replay ENDPOINT FILE...
// to send saved inputs again, printing each answer. With FUZZ_DEBUG set, a request that does not end is printed with the ones before it on its
// connection.
package main

import (
	"checks"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/auth/authpb"
	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/etcdserver/api/v3lock/v3lockpb"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"golang.org/x/net/http2"
	"rawh2"
)

type marshaler interface{ Marshal() ([]byte, error) }

// rpc is one method with valid requests to start mutating from. Streaming ones get their
// request without a half-close; they, and the calls that may wait for ever by design (Lock,
// Campaign), are cancelled when no answer has ended them within 300 ms.
type rpc struct {
	path      string
	streaming bool
	seeds     []marshaler
}

// mayWait tells the calls that can stay open without anything being wrong.
func (r rpc) mayWait() bool {
	return r.streaming || r.path == "/v3lockpb.Lock/Lock" || r.path == "/v3electionpb.Election/Campaign"
}

// The methods fuzzed. Left out: those that change what the rest of the run stands on
// (AuthEnable, AuthDisable, MemberAdd/Remove/Update/Promote, MoveLeader, Downgrade) and the slow
// Defragment; their requests go through the same decoding.
var rpcs = []rpc{
	{"/etcdserverpb.KV/Range", false, []marshaler{
		&pb.RangeRequest{Key: []byte("fuzz/a")}, &pb.RangeRequest{Key: []byte("fuzz/"), RangeEnd: []byte("fuzz0"), Limit: 3, SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_MOD, Revision: 2, CountOnly: true},
		&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, KeysOnly: true, MinModRevision: 1, MaxCreateRevision: 100, Serializable: true}}},
	{"/etcdserverpb.KV/Put", false, []marshaler{
		&pb.PutRequest{Key: []byte("fuzz/a"), Value: []byte("value")}, &pb.PutRequest{Key: []byte("fuzz/b"), PrevKv: true, IgnoreValue: true, Lease: 7}}},
	{"/etcdserverpb.KV/DeleteRange", false, []marshaler{
		&pb.DeleteRangeRequest{Key: []byte("fuzz/a")}, &pb.DeleteRangeRequest{Key: []byte("fuzz/"), RangeEnd: []byte("fuzz0"), PrevKv: true}}},
	{"/etcdserverpb.KV/Txn", false, []marshaler{&pb.TxnRequest{
		Compare: []*pb.Compare{{Key: []byte("fuzz/a"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 0}},
			{Key: []byte("fuzz/b"), Target: pb.Compare_VALUE, TargetUnion: &pb.Compare_Value{Value: []byte("x")}, RangeEnd: []byte("fuzz/c")}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("fuzz/t"), Value: []byte("1")}}},
			{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("fuzz/t")}}}}}}}},
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("fuzz/t")}}}},
	}}},
	{"/etcdserverpb.KV/Compact", false, []marshaler{&pb.CompactionRequest{Revision: 1}, &pb.CompactionRequest{Revision: 1 << 40, Physical: true}}},
	{"/etcdserverpb.Watch/Watch", true, []marshaler{
		&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("fuzz/"), RangeEnd: []byte("fuzz0"), StartRevision: 1, ProgressNotify: true, Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}, PrevKv: true, WatchId: 5, Fragment: true}}},
		&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 3}}},
		&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}}},
	{"/etcdserverpb.Lease/LeaseGrant", false, []marshaler{&pb.LeaseGrantRequest{TTL: 5}, &pb.LeaseGrantRequest{TTL: 60, ID: 99}}},
	{"/etcdserverpb.Lease/LeaseRevoke", false, []marshaler{&pb.LeaseRevokeRequest{ID: 99}}},
	{"/etcdserverpb.Lease/LeaseKeepAlive", true, []marshaler{&pb.LeaseKeepAliveRequest{ID: 99}}},
	{"/etcdserverpb.Lease/LeaseTimeToLive", false, []marshaler{&pb.LeaseTimeToLiveRequest{ID: 99, Keys: true}}},
	{"/etcdserverpb.Lease/LeaseLeases", false, []marshaler{&pb.LeaseLeasesRequest{}}},
	{"/etcdserverpb.Cluster/MemberList", false, []marshaler{&pb.MemberListRequest{}, rawMessage{0x08, 0x01} /* linearizable: 3.5 and later */}},
	{"/etcdserverpb.Maintenance/Alarm", false, []marshaler{&pb.AlarmRequest{Action: pb.AlarmRequest_GET}, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, MemberID: 1, Alarm: pb.AlarmType_NOSPACE}}},
	{"/etcdserverpb.Maintenance/Status", false, []marshaler{&pb.StatusRequest{}}},
	{"/etcdserverpb.Maintenance/Hash", false, []marshaler{&pb.HashRequest{}}},
	{"/etcdserverpb.Maintenance/HashKV", false, []marshaler{&pb.HashKVRequest{Revision: 0}, &pb.HashKVRequest{Revision: 3}}},
	{"/etcdserverpb.Maintenance/Snapshot", true, []marshaler{&pb.SnapshotRequest{}}},
	{"/etcdserverpb.Auth/AuthStatus", false, []marshaler{rawMessage(nil) /* AuthStatusRequest: 3.5 and later */}},
	{"/etcdserverpb.Auth/Authenticate", false, []marshaler{&pb.AuthenticateRequest{Name: "fuzz", Password: "pw"}}},
	{"/etcdserverpb.Auth/UserAdd", false, []marshaler{&pb.AuthUserAddRequest{Name: "fuzz", Password: "pw"}, &pb.AuthUserAddRequest{Name: "fuzz2", Options: &authpb.UserAddOptions{NoPassword: true}}}},
	{"/etcdserverpb.Auth/UserGet", false, []marshaler{&pb.AuthUserGetRequest{Name: "fuzz"}}},
	{"/etcdserverpb.Auth/UserList", false, []marshaler{&pb.AuthUserListRequest{}}},
	{"/etcdserverpb.Auth/UserDelete", false, []marshaler{&pb.AuthUserDeleteRequest{Name: "fuzz2"}}},
	{"/etcdserverpb.Auth/UserChangePassword", false, []marshaler{&pb.AuthUserChangePasswordRequest{Name: "fuzz", Password: "pw2"}}},
	{"/etcdserverpb.Auth/UserGrantRole", false, []marshaler{&pb.AuthUserGrantRoleRequest{User: "fuzz", Role: "fuzzrole"}}},
	{"/etcdserverpb.Auth/UserRevokeRole", false, []marshaler{&pb.AuthUserRevokeRoleRequest{Name: "fuzz", Role: "fuzzrole"}}},
	{"/etcdserverpb.Auth/RoleAdd", false, []marshaler{&pb.AuthRoleAddRequest{Name: "fuzzrole"}}},
	{"/etcdserverpb.Auth/RoleGet", false, []marshaler{&pb.AuthRoleGetRequest{Role: "fuzzrole"}}},
	{"/etcdserverpb.Auth/RoleList", false, []marshaler{&pb.AuthRoleListRequest{}}},
	{"/etcdserverpb.Auth/RoleDelete", false, []marshaler{&pb.AuthRoleDeleteRequest{Role: "fuzzrole2"}}},
	{"/etcdserverpb.Auth/RoleGrantPermission", false, []marshaler{&pb.AuthRoleGrantPermissionRequest{Name: "fuzzrole", Perm: &authpb.Permission{PermType: authpb.READWRITE, Key: []byte("fuzz/"), RangeEnd: []byte("fuzz0")}}}},
	{"/etcdserverpb.Auth/RoleRevokePermission", false, []marshaler{&pb.AuthRoleRevokePermissionRequest{Role: "fuzzrole", Key: []byte("fuzz/"), RangeEnd: []byte("fuzz0")}}},
	{"/v3lockpb.Lock/Lock", false, []marshaler{&v3lockpb.LockRequest{Name: []byte("fuzz/lock"), Lease: 99}}},
	{"/v3lockpb.Lock/Unlock", false, []marshaler{&v3lockpb.UnlockRequest{Key: []byte("fuzz/lock/1")}}},
	{"/v3electionpb.Election/Campaign", false, []marshaler{&v3electionpb.CampaignRequest{Name: []byte("fuzz/e"), Lease: 99, Value: []byte("v")}}},
	{"/v3electionpb.Election/Proclaim", false, []marshaler{&v3electionpb.ProclaimRequest{Leader: &v3electionpb.LeaderKey{Name: []byte("fuzz/e"), Key: []byte("fuzz/e/1"), Rev: 3, Lease: 99}, Value: []byte("w")}}},
	{"/v3electionpb.Election/Leader", false, []marshaler{&v3electionpb.LeaderRequest{Name: []byte("fuzz/e")}}},
	{"/v3electionpb.Election/Observe", true, []marshaler{&v3electionpb.LeaderRequest{Name: []byte("fuzz/e")}}},
	{"/v3electionpb.Election/Resign", false, []marshaler{&v3electionpb.ResignRequest{Leader: &v3electionpb.LeaderKey{Name: []byte("fuzz/e"), Key: []byte("fuzz/e/1")}}}},
	{"/grpc.health.v1.Health/Check", false, []marshaler{rawMessage(nil)}},
}

// rawMessage marshals as itself.
type rawMessage []byte

func (m rawMessage) Marshal() ([]byte, error) { return m, nil }

// input is one fuzz case: a method and the bytes of its request (already gRPC-framed, as the
// framing is mutated too).
type input struct {
	rpc   int
	bytes []byte
}

func main() {
	if os.Args[1] == "replay" {
		replay(os.Args[2], os.Args[3:])
		return
	}
	endpoint := os.Args[1]
	pid, _ := strconv.Atoi(os.Args[2])
	seconds, _ := strconv.Atoi(os.Args[3])
	seed, _ := strconv.ParseInt(os.Args[4], 10, 64)
	corpusDir, crashersDir := os.Args[5], os.Args[6]
	random := rand.New(rand.NewSource(seed))
	f := &fuzzer{endpoint: endpoint, pid: pid, random: random, corpusDir: corpusDir, crashersDir: crashersDir,
		seen: map[string]bool{}, statuses: map[string]int{}}
	f.loadCorpus()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("FAIL dial:", err)
		os.Exit(1)
	}
	defer cli.Close()
	f.cli = cli
	fdsBefore := descriptors(pid)
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	for round := 0; time.Now().Before(deadline) && f.problems < 5; round++ {
		if round%10 == 9 {
			f.frameSequence()
		} else {
			f.request(f.mutated())
		}
		if round%50 == 49 && !f.alive() {
			break
		}
	}
	f.close()
	fmt.Printf("FIGURE seed %d: %d requests, %d frame sequences, %d corpus inputs (%d new), %d answers by kind:\n", seed, f.requests, f.sequences, len(f.corpus), f.added, len(f.statuses))
	kinds := make([]string, 0, len(f.statuses))
	for kind := range f.statuses {
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		fmt.Printf("  %6d %s\n", f.statuses[kind], kind)
	}
	checks.Check("every request ended within 5 s and refused ones left the revision alone", f.firstProblem)
	checks.Check("the server stayed up and kept answering", f.aliveError())
	time.Sleep(time.Second)
	fdsAfter := descriptors(pid)
	if fdsAfter > fdsBefore+5 {
		checks.Check("descriptors given back", fmt.Errorf("%d open, %d before", fdsAfter, fdsBefore))
	} else {
		checks.Check("descriptors given back", nil)
	}
	checks.Finish("fuzz")
}

type fuzzer struct {
	endpoint, corpusDir, crashersDir string
	pid                              int
	random                           *rand.Rand
	cli                              *clientv3.Client
	conn                             *rawh2.Conn
	corpus                           []input
	seen                             map[string]bool
	statuses                         map[string]int
	requests, sequences, added       int
	problems                         int
	history                          []input
	firstProblem                     error
}

func (f *fuzzer) loadCorpus() {
	for i, r := range rpcs {
		for _, seed := range r.seeds {
			bytes, _ := seed.Marshal()
			f.corpus = append(f.corpus, input{i, rawh2.Frame(bytes)})
		}
	}
	files, _ := filepath.Glob(filepath.Join(f.corpusDir, "*", "*"))
	for _, file := range files {
		method := filepath.Base(filepath.Dir(file))
		for i, r := range rpcs {
			if strings.ReplaceAll(strings.TrimPrefix(r.path, "/"), "/", ".") == method {
				if data, err := os.ReadFile(file); err == nil {
					f.corpus = append(f.corpus, input{i, data})
				}
			}
		}
	}
}

// mutated picks a corpus input and changes it one to four times.
func (f *fuzzer) mutated() input {
	in := f.corpus[f.random.Intn(len(f.corpus))]
	data := append([]byte(nil), in.bytes...)
	for n := 1 + f.random.Intn(4); n > 0; n-- {
		data = f.mutate(data)
	}
	return input{in.rpc, data}
}

func (f *fuzzer) mutate(data []byte) []byte {
	r := f.random
	body := 5
	switch r.Intn(11) {
	case 0: // flip a bit of the message
		if len(data) > body {
			i := body + r.Intn(len(data)-body)
			data[i] ^= 1 << uint(r.Intn(8))
		}
	case 1: // a random byte
		if len(data) > body {
			data[body+r.Intn(len(data)-body)] = byte(r.Intn(256))
		}
	case 2: // cut the message short (the prefix still claims the old length)
		if len(data) > body {
			data = data[:body+r.Intn(len(data)-body)]
		}
	case 3: // random bytes appended
		extra := make([]byte, 1+r.Intn(16))
		r.Read(extra)
		data = append(data, extra...)
	case 4: // a slice of the message repeated (duplicate fields)
		if len(data) > body+1 {
			a := body + r.Intn(len(data)-body)
			b := a + r.Intn(len(data)-a)
			data = append(data[:b:b], append(append([]byte(nil), data[a:b]...), data[b:]...)...)
		}
	case 5: // a field with a huge or negative varint
		tag := byte(1+r.Intn(15))<<3 | byte([]int{0, 2}[r.Intn(2)])
		values := [][]byte{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {0x80, 0x80, 0x80, 0x80, 0x08}, {0xff, 0xff, 0xff, 0xff, 0x0f}}
		data = append(data, append([]byte{tag}, values[r.Intn(len(values))]...)...)
	case 6: // the length prefix says something else
		if len(data) >= body {
			lengths := []uint32{0, 1, uint32(len(data)), uint32(len(data) - body + 1), 1 << 31, 4 << 20, r.Uint32()}
			l := lengths[r.Intn(len(lengths))]
			data[1], data[2], data[3], data[4] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
		}
	case 7: // the compressed flag, or another flag byte
		if len(data) > 0 {
			data[0] = []byte{1, 2, 0x80, 0xff}[r.Intn(4)]
		}
	case 8: // an entirely random message
		message := make([]byte, r.Intn(64))
		r.Read(message)
		data = rawh2.Frame(message)
	case 9: // nested garbage in a length-delimited field
		garbage := make([]byte, r.Intn(24))
		r.Read(garbage)
		data = append(data, rawh2.Field(byte(1+r.Intn(15)), garbage)...)
	case 10: // splice with another corpus input
		other := f.corpus[r.Intn(len(f.corpus))].bytes
		if len(data) > body && len(other) > body {
			data = append(data[:body+r.Intn(len(data)-body)], other[body+r.Intn(len(other)-body):]...)
		}
	}
	// Keep the prefix's length right most of the time, so the message itself is what is tested.
	if len(data) >= body && r.Intn(4) != 0 && data[0] == 0 {
		l := uint32(len(data) - body)
		data[1], data[2], data[3], data[4] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
	}
	return data
}

func (f *fuzzer) connection() (*rawh2.Conn, error) {
	if f.conn != nil {
		return f.conn, nil
	}
	c, err := rawh2.Connect(f.endpoint, 1<<20)
	if err != nil {
		return nil, err
	}
	f.conn = c
	return c, nil
}

func (f *fuzzer) close() {
	f.history = nil
	if f.conn != nil {
		f.conn.Conn.Close()
		f.conn = nil
	}
}

func (f *fuzzer) revision() (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := f.cli.Get(ctx, "fuzz/revision-probe", clientv3.WithSerializable())
	if err != nil {
		return 0, err
	}
	return r.Header.Revision, nil
}

// request sends one input and checks how it ends.
func (f *fuzzer) request(in input) {
	f.requests++
	method := rpcs[in.rpc]
	before, err := f.revision()
	if err != nil {
		f.problem(in, fmt.Errorf("revision before: %v", err))
		return
	}
	c, err := f.connection()
	if err != nil {
		f.problem(in, fmt.Errorf("connect: %v", err))
		return
	}
	id := c.NextStreamID()
	f.history = append(f.history, in)
	if len(f.history) > 6 {
		f.history = f.history[1:]
	}
	if _, err := c.Open(method.path, nil, false); err != nil {
		f.close()
		return
	}
	if err := c.Framer.WriteData(id, !method.streaming, in.bytes); err != nil {
		f.close()
		return
	}
	limit := 5 * time.Second
	if method.mayWait() {
		limit = 300 * time.Millisecond
	}
	status, message, err := c.Status(id, limit)
	kind := ""
	switch {
	case err == nil:
		kind = method.path + " " + status + " " + firstWords(message)
	case method.mayWait() && isTimeout(err):
		// Still streaming, or waiting for a lock or an election: that is an answer too.
		kind = method.path + " open"
		c.Framer.WriteRSTStream(id, http2.ErrCodeCancel)
	default:
		var away http2.GoAwayError
		if errors.As(err, &away) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset") {
			kind = method.path + " connection closed"
			f.close()
		} else {
			if os.Getenv("FUZZ_DEBUG") != "" {
				for _, h := range f.history {
					fmt.Printf("  before: %s %x\n", rpcs[h.rpc].path, h.bytes)
				}
			}
			f.problem(in, fmt.Errorf("%s: no end within %v: %v", method.path, limit, err))
			f.close()
			return
		}
	}
	f.statuses[kind]++
	if status != "0" && !strings.HasSuffix(kind, " open") {
		if after, err := f.revision(); err == nil && after != before {
			f.confirmRevisionMoved(in, status, message)
		}
	}
	if !f.seen[kind] {
		f.seen[kind] = true
		f.corpus = append(f.corpus, in)
		f.save(f.corpusDir, in)
		f.added++
	}
}

// confirmRevisionMoved sends a refused input again once things are quiet: leases expiring and
// sessions ending (earlier inputs granted them) move the revision too, but a request that
// changes data while refused does it again.
func (f *fuzzer) confirmRevisionMoved(in input, status, message string) {
	time.Sleep(1500 * time.Millisecond)
	before, err := f.revision()
	if err != nil {
		return
	}
	f.close()
	c, err := f.connection()
	if err != nil {
		return
	}
	method := rpcs[in.rpc]
	id, _ := c.Open(method.path, nil, false)
	c.Framer.WriteData(id, true, in.bytes)
	again, _, err := c.Status(id, 5*time.Second)
	f.close()
	after, errAfter := f.revision()
	if err == nil && errAfter == nil && again != "0" && after != before {
		f.problem(in, fmt.Errorf("%s answered %q %q but the revision moved (again: from %d to %d)", method.path, status, message, before, after))
	} else {
		f.statuses["revision moved by something else (a lease, a session)"]++
	}
}

// frameSequence opens a connection and sends 1–12 random frames, valid and not, then checks
// the server answers on a fresh connection.
func (f *fuzzer) frameSequence() {
	f.sequences++
	r := f.random
	c, err := rawh2.Dial(f.endpoint, uint32(r.Intn(1<<20)))
	if err != nil {
		f.problem(input{}, fmt.Errorf("connect for a frame sequence: %v", err))
		return
	}
	defer c.Conn.Close()
	if r.Intn(4) != 0 {
		c.Settings()
	}
	for n := 1 + r.Intn(12); n > 0; n-- {
		stream := uint32(r.Intn(8))
		payload := make([]byte, r.Intn(40))
		r.Read(payload)
		switch r.Intn(12) {
		case 0:
			c.Open(rpcs[r.Intn(len(rpcs))].path, nil, r.Intn(2) == 0)
		case 1:
			c.Framer.WriteData(stream, r.Intn(2) == 0, payload)
		case 2:
			c.Framer.WriteRawFrame(http2.FrameHeaders, http2.Flags(r.Intn(256)), stream, payload)
		case 3:
			c.Framer.WriteRSTStream(stream, http2.ErrCode(r.Intn(16)))
		case 4:
			c.Framer.WriteSettings(http2.Setting{ID: http2.SettingID(r.Intn(10)), Val: r.Uint32()})
		case 5:
			c.Framer.WritePing(r.Intn(2) == 0, [8]byte{byte(r.Intn(256))})
		case 6:
			c.Framer.WriteGoAway(stream, http2.ErrCode(r.Intn(16)), payload)
		case 7:
			c.Framer.WriteWindowUpdate(stream, uint32(r.Intn(1<<31)))
		case 8:
			c.Framer.WriteRawFrame(http2.FrameContinuation, http2.Flags(r.Intn(256)), stream, payload)
		case 9:
			c.Framer.WriteRawFrame(http2.FramePriority, 0, stream, payload)
		case 10:
			c.Framer.WriteRawFrame(http2.FrameType(10+r.Intn(200)), http2.Flags(r.Intn(256)), stream, payload)
		case 11:
			c.Framer.WriteRawFrame(http2.FramePushPromise, http2.Flags(r.Intn(256)), stream, payload)
		}
	}
	// Whatever the server makes of it, it answers within 5 s or closes the connection.
	_, err = c.ReadUntil(2*time.Second, true, func(http2.Frame) bool { return false })
	if err != nil && !isTimeout(err) {
		f.statuses["frame sequence: connection ended"]++
	} else {
		f.statuses["frame sequence: connection kept"]++
	}
}

func (f *fuzzer) alive() bool {
	if syscall.Kill(f.pid, 0) != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := f.cli.Status(ctx, f.endpoint)
	return err == nil
}

func (f *fuzzer) aliveError() error {
	if syscall.Kill(f.pid, 0) != nil {
		return errors.New("the server process is gone")
	}
	if !f.alive() {
		return errors.New("the server does not answer Status")
	}
	return nil
}

func (f *fuzzer) problem(in input, err error) {
	f.problems++
	if f.firstProblem == nil {
		f.firstProblem = err
	}
	fmt.Println("PROBLEM", err)
	if in.bytes != nil {
		fmt.Println("  saved as", f.save(f.crashersDir, in))
	}
}

func (f *fuzzer) save(dir string, in input) string {
	method := strings.ReplaceAll(strings.TrimPrefix(rpcs[in.rpc].path, "/"), "/", ".")
	sum := sha256.Sum256(in.bytes)
	path := filepath.Join(dir, method, hex.EncodeToString(sum[:8]))
	os.MkdirAll(filepath.Dir(path), 0o755)
	os.WriteFile(path, in.bytes, 0o644)
	return path
}

// replay sends saved inputs (their directory names the method) and prints each answer.
func replay(endpoint string, files []string) {
	f := &fuzzer{endpoint: endpoint}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Println(file, err)
			continue
		}
		method := filepath.Base(filepath.Dir(file))
		for _, r := range rpcs {
			if strings.ReplaceAll(strings.TrimPrefix(r.path, "/"), "/", ".") != method {
				continue
			}
			c, err := f.connection()
			if err != nil {
				fmt.Println(file, err)
				return
			}
			id, _ := c.Open(r.path, nil, false)
			c.Framer.WriteData(id, !r.streaming, data)
			status, message, err := c.Status(id, 5*time.Second)
			fmt.Printf("%s: %s %q %v\n", file, status, message, err)
			f.close()
		}
	}
}

func firstWords(message string) string {
	words := strings.Fields(message)
	if len(words) > 4 {
		words = words[:4]
	}
	return strings.Join(words, " ")
}

func isTimeout(err error) bool {
	var timeout net.Error
	return errors.As(err, &timeout) && timeout.Timeout()
}

// descriptors counts the server's open file descriptors.
func descriptors(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds)
}
