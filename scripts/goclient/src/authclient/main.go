// authclient drives a server with auth through the Go clientv3 library, as an application with
// a user name and password would: it sets up users and roles as root, enables auth, then works
// as alice across an auth change made by root meanwhile: unary calls, a watch stream opened
// before the change that must go on delivering and accept new watchers, a lease kept alive.
// Usage: authclient ENDPOINT. Prints PASS/FAIL lines and a count; exits 1 on a failure.
package main

import (
	"checks"
	"context"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func expectEvent(ch clientv3.WatchChan, key string) error {
	select {
	case resp, ok := <-ch:
		if !ok {
			return fmt.Errorf("watch channel closed")
		}
		if err := resp.Err(); err != nil {
			return err
		}
		if len(resp.Events) == 0 || string(resp.Events[0].Kv.Key) != key {
			return fmt.Errorf("unexpected response %+v", resp)
		}
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("no event for %s within 10 s", key)
	}
}

func main() {
	endpoint := os.Args[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	setup, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("FAIL dial:", err)
		os.Exit(1)
	}
	steps := []func() error{
		func() error { _, err := setup.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := setup.RoleAdd(ctx, "root"); return err },
		func() error { _, err := setup.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := setup.UserAdd(ctx, "alice", "alicepw"); return err },
		func() error { _, err := setup.RoleAdd(ctx, "app"); return err },
		func() error {
			_, err := setup.RoleGrantPermission(ctx, "app", "/app/", clientv3.GetPrefixRangeEnd("/app/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := setup.UserGrantRole(ctx, "alice", "app"); return err },
		func() error { _, err := setup.AuthEnable(ctx); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			fmt.Println("FAIL setup:", err)
			os.Exit(1)
		}
	}
	setup.Close()
	checks.Check("setup as root, auth enabled", nil)

	alice, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Username: "alice", Password: "alicepw"})
	checks.Check("alice logs in", err)
	if err != nil {
		os.Exit(1)
	}
	defer alice.Close()
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Username: "root", Password: "rootpw"})
	checks.Check("root logs in", err)
	if err != nil {
		os.Exit(1)
	}
	defer root.Close()

	_, err = alice.Put(ctx, "/app/a", "1")
	checks.Check("alice puts inside her prefix", err)
	_, err = alice.Put(ctx, "/other", "1")
	if err == nil || err.Error() != "etcdserver: permission denied" {
		checks.Check("alice is refused outside her prefix", fmt.Errorf("got %v", err))
	} else {
		checks.Check("alice is refused outside her prefix", nil)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch := alice.Watch(watchCtx, "/app/", clientv3.WithPrefix())
	lease, err := alice.Grant(ctx, 60)
	checks.Check("alice grants a lease", err)
	keepAlive, err := alice.KeepAlive(ctx, lease.ID)
	checks.Check("alice keeps it alive", err)
	_, err = alice.Put(ctx, "/app/b", "2")
	checks.Check("put before the auth change", err)
	checks.Check("the watch sees it", expectEvent(watch, "/app/b"))

	// root changes auth: alice's role gains a prefix.
	_, err = root.RoleGrantPermission(ctx, "app", "/more/", clientv3.GetPrefixRangeEnd("/more/"), clientv3.PermissionType(clientv3.PermReadWrite))
	checks.Check("root grants alice's role more", err)
	_, err = alice.Put(ctx, "/app/c", "3")
	checks.Check("alice puts after the auth change", err)
	checks.Check("the watch opened before the change sees it", expectEvent(watch, "/app/c"))
	_, err = alice.Put(ctx, "/more/x", "4")
	checks.Check("alice uses the new grant at once", err)
	// A new watcher on the same stream (same context) after the change.
	more := alice.Watch(watchCtx, "/more/", clientv3.WithPrefix())
	time.Sleep(500 * time.Millisecond)
	_, err = alice.Put(ctx, "/more/y", "5")
	checks.Check("put under the new grant", err)
	checks.Check("a watcher created after the change sees it", expectEvent(more, "/more/y"))
	select {
	case resp, ok := <-keepAlive:
		if !ok || resp == nil {
			checks.Check("the keep-alive goes on", fmt.Errorf("keep-alive channel closed"))
		} else {
			checks.Check("the keep-alive goes on", nil)
		}
	case <-time.After(10 * time.Second):
		checks.Check("the keep-alive goes on", fmt.Errorf("no keep-alive answer within 10 s"))
	}
	// root takes the role away: alice's next request is refused.
	_, err = root.UserRevokeRole(ctx, "alice", "app")
	checks.Check("root revokes alice's role", err)
	_, err = alice.Put(ctx, "/app/d", "6")
	if err == nil || err.Error() != "etcdserver: permission denied" {
		checks.Check("alice is refused after the revoke", fmt.Errorf("got %v", err))
	} else {
		checks.Check("alice is refused after the revoke", nil)
	}
	checks.Finish("authclient")
}
