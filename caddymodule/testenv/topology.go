package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Topology names a Redis deployment the way authgate's config does: one
// server by URL, a Sentinel group (a master's name and its sentinels), or a
// Cluster (seed addresses). Exactly one of the three forms is set.
type Topology struct {
	Name           string // "single", "sentinel" or "cluster": a t.Run name
	URL            string
	SentinelMaster string
	SentinelAddrs  []string
	ClusterAddrs   []string
}

// Directive returns the line of the authgate global option that names the
// deployment: redis <url>, redis_sentinel <master> <addr>... or
// redis_cluster <addr>...
func (tp Topology) Directive() string {
	switch {
	case tp.SentinelMaster != "":
		return "redis_sentinel " + tp.SentinelMaster + " " + strings.Join(tp.SentinelAddrs, " ")
	case len(tp.ClusterAddrs) > 0:
		return "redis_cluster " + strings.Join(tp.ClusterAddrs, " ")
	default:
		return "redis " + tp.URL
	}
}

// Options returns go-redis options for a client of the deployment, with
// go-redis's defaults otherwise.
func (tp Topology) Options() *redis.UniversalOptions {
	switch {
	case tp.SentinelMaster != "":
		return &redis.UniversalOptions{MasterName: tp.SentinelMaster, Addrs: tp.SentinelAddrs}
	case len(tp.ClusterAddrs) > 0:
		return &redis.UniversalOptions{Addrs: tp.ClusterAddrs, IsClusterMode: true}
	default:
		o, err := redis.ParseURL(tp.URL)
		if err != nil {
			// The URLs come from us or from AUTHGATE_REDIS, checked there.
			panic(fmt.Sprintf("testenv: redis URL %q: %v", tp.URL, err))
		}
		return &redis.UniversalOptions{Addrs: []string{o.Addr}, DB: o.DB, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig}
	}
}

// Client returns a new client of the deployment; the caller closes it.
func (tp Topology) Client() redis.UniversalClient { return redis.NewUniversalClient(tp.Options()) }

// Keys returns every key matching pattern, from every master of a cluster
// (KEYS on a cluster client asks one node only).
func Keys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Keys(ctx, pattern).Result()
	}
	var mu sync.Mutex
	var all []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		keys, err := node.Keys(ctx, pattern).Result()
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return err
	})
	slices.Sort(all)
	return all, err
}

// Cluster is a Redis Cluster of three masters with one replica each, on
// loopback. Its nodes keep their cluster state (nodes.conf) in their
// directories, so a node killed and started again rejoins the cluster; a
// master that was failed over rejoins as a replica.
type Cluster struct {
	// Nodes in the order they were created; which are masters changes
	// with failovers (see Masters).
	Nodes []*Redis
}

// ClusterMasters and ClusterReplicas are the shape of every Cluster.
const (
	ClusterMasters  = 3
	ClusterReplicas = 1 // per master
)

// StartCluster starts a cluster in dir (a directory per node), creates it
// with redis-cli, and waits until every node sees every slot served.
// nodeTimeout is cluster-node-timeout: how long a master may not answer
// before its replica takes over.
func StartCluster(dir string, nodeTimeout time.Duration) (c *Cluster, err error) {
	cli, err := lookPath("redis-cli", "redis-tools")
	if err != nil {
		return nil, err
	}
	n := ClusterMasters * (1 + ClusterReplicas)
	// The cluster bus's port is the client port + 10000 unless set: a free
	// port near the top of the range would have none.
	ports, err := FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c = &Cluster{Nodes: make([]*Redis, n)}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c.Nodes[i], errs[i] = startRedis(filepath.Join(dir, fmt.Sprintf("node%d", i)), ports[i],
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(ports[n+i]),
				"--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10),
			)
		})
	}
	wg.Wait()
	c.Nodes = slices.DeleteFunc(c.Nodes, func(r *Redis) bool { return r == nil })
	if err := errors.Join(errs...); err != nil {
		return c, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	args := []string{"--cluster", "create"}
	for _, node := range c.Nodes {
		args = append(args, node.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(ClusterReplicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return c, fmt.Errorf("redis-cli %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return c, c.WaitHealthy(ctx)
}

// Addrs returns the host:port of every node: the seeds of a client.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, node := range c.Nodes {
		addrs[i] = node.Addr()
	}
	return addrs
}

// Topology returns the cluster as a Topology named "cluster".
func (c *Cluster) Topology() Topology { return Topology{Name: "cluster", ClusterAddrs: c.Addrs()} }

// Stop stops every node.
func (c *Cluster) Stop() error {
	var errs []error
	for _, node := range c.Nodes {
		errs = append(errs, node.Stop())
	}
	return errors.Join(errs...)
}

// nodeInfo is what a running node says of itself.
type nodeInfo struct {
	master   bool
	linkUp   bool // a replica's link to its master
	replicas int  // a master's connected replicas
	clusterOK,
	allSlots bool // cluster_state:ok and every slot assigned and served
	known int // cluster_known_nodes
}

func (r *Redis) info(ctx context.Context, sections ...string) (map[string]string, error) {
	rc := r.client()
	defer rc.Close()
	text, err := rc.Info(ctx, sections...).Result()
	if err != nil {
		return nil, err
	}
	return parseInfo(text), nil
}

// parseInfo reads the field:value lines of INFO and CLUSTER INFO.
func parseInfo(text string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

func (c *Cluster) nodeInfo(ctx context.Context, node *Redis) (nodeInfo, error) {
	repl, err := node.info(ctx, "replication")
	if err != nil {
		return nodeInfo{}, err
	}
	rc := node.client()
	defer rc.Close()
	text, err := rc.ClusterInfo(ctx).Result()
	if err != nil {
		return nodeInfo{}, err
	}
	ci := parseInfo(text)
	all := strconv.Itoa(16384)
	replicas, _ := strconv.Atoi(repl["connected_slaves"])
	known, _ := strconv.Atoi(ci["cluster_known_nodes"])
	return nodeInfo{
		master:    repl["role"] == "master",
		linkUp:    repl["master_link_status"] == "up",
		replicas:  replicas,
		clusterOK: ci["cluster_state"] == "ok",
		allSlots:  ci["cluster_slots_assigned"] == all && ci["cluster_slots_ok"] == all,
		known:     known,
	}, nil
}

// healthy tells whether every running node sees the cluster whole: state
// ok, every slot served, every node known; three masters among the running
// nodes, each with every running replica in sync with it.
func (c *Cluster) healthy(ctx context.Context) error {
	masters, replicas := 0, 0
	for _, node := range c.Nodes {
		if !node.Running() {
			continue
		}
		ni, err := c.nodeInfo(ctx, node)
		switch {
		case err != nil:
			return fmt.Errorf("node %s: %w", node.Addr(), err)
		case !ni.clusterOK || !ni.allSlots:
			return fmt.Errorf("node %s: cluster not ok", node.Addr())
		case ni.known != len(c.Nodes):
			return fmt.Errorf("node %s knows %d nodes", node.Addr(), ni.known)
		case ni.master:
			masters++
			replicas += ni.replicas
		case !ni.linkUp:
			return fmt.Errorf("replica %s: link to its master down", node.Addr())
		}
	}
	running := 0
	for _, node := range c.Nodes {
		if node.Running() {
			running++
		}
	}
	if masters != ClusterMasters || masters+replicas != running {
		return fmt.Errorf("%d masters with %d replicas connected, of %d nodes running", masters, replicas, running)
	}
	return nil
}

// WaitHealthy waits until the cluster is whole again (see healthy), as it
// is after its start, after a failover has promoted a replica, and after a
// node started again has caught up.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	return poll(ctx, "redis cluster healthy", func() error { return c.healthy(ctx) })
}

// Masters returns the running nodes that are masters now.
func (c *Cluster) Masters(ctx context.Context) ([]*Redis, error) {
	var masters []*Redis
	for _, node := range c.Nodes {
		if !node.Running() {
			continue
		}
		repl, err := node.info(ctx, "replication")
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", node.Addr(), err)
		}
		if repl["role"] == "master" {
			masters = append(masters, node)
		}
	}
	return masters, nil
}

// MasterOf returns the node that serves key now, by asking a running node.
func (c *Cluster) MasterOf(ctx context.Context, key string) (*Redis, error) {
	for _, node := range c.Nodes {
		if !node.Running() {
			continue
		}
		rc := node.client()
		slots, err := rc.ClusterSlots(ctx).Result()
		var slot int64
		if err == nil {
			slot, err = rc.ClusterKeySlot(ctx, key).Result()
		}
		rc.Close()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				return c.node(s.Nodes[0].Addr)
			}
		}
	}
	return nil, fmt.Errorf("no running node knows who serves %q", key)
}

func (c *Cluster) node(addr string) (*Redis, error) {
	for _, node := range c.Nodes {
		if node.Addr() == addr {
			return node, nil
		}
	}
	return nil, fmt.Errorf("%s is no node of the cluster", addr)
}

// Sentinels is a Redis Sentinel group on loopback: a master, its replica,
// and three sentinels (quorum two) that fail the master over to the
// replica when it stops answering.
type Sentinels struct {
	Master    string   // the name the sentinels know the master by
	Data      []*Redis // the data nodes; the first started as the master
	Sentinels []*Redis
}

// SentinelMaster is the name every Sentinels group gives its master.
const SentinelMaster = "authgate"

// StartSentinels starts a group in dir and waits until every sentinel knows
// the master, its replica in sync, and the other sentinels. downAfter is
// down-after-milliseconds: how long the master may not answer before a
// failover begins.
func StartSentinels(dir string, downAfter time.Duration) (g *Sentinels, err error) {
	ports, err := FreePorts(5)
	if err != nil {
		return nil, err
	}
	g = &Sentinels{Master: SentinelMaster}
	defer func() {
		if err != nil {
			g.Stop()
		}
	}()
	master, err := startRedis(filepath.Join(dir, "data0"), ports[0])
	if err != nil {
		return g, err
	}
	g.Data = append(g.Data, master)
	replica, err := startRedis(filepath.Join(dir, "data1"), ports[1], "--replicaof", "127.0.0.1", strconv.Itoa(ports[0]))
	if err != nil {
		return g, err
	}
	g.Data = append(g.Data, replica)
	for i, port := range ports[2:] {
		s, err := startSentinel(filepath.Join(dir, fmt.Sprintf("sentinel%d", i)), port, master.Addr(), downAfter)
		if err != nil {
			return g, err
		}
		g.Sentinels = append(g.Sentinels, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return g, g.WaitHealthy(ctx)
}

// startSentinel starts redis-server --sentinel with a config file of its
// own, which the sentinel rewrites as it learns the group (so that, started
// again, it knows what it knew).
func startSentinel(dir string, port int, master string, downAfter time.Duration) (*Redis, error) {
	bin, err := lookPath("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sentinel directory: %w", err)
	}
	host, masterPort, _ := strings.Cut(master, ":")
	conf := filepath.Join(dir, "sentinel.conf")
	// failover-timeout also spaces a sentinel's tries at the same master.
	name, ms := SentinelMaster, downAfter.Milliseconds()
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
		"sentinel monitor %s %s %s 2\n"+
		"sentinel down-after-milliseconds %s %d\n"+
		"sentinel failover-timeout %s %d\n"+
		"sentinel parallel-syncs %s 1\n",
		port, dir, name, host, masterPort, name, ms, name, 5*ms, name)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	s := &Redis{server{
		name:    "redis-sentinel",
		port:    port,
		logPath: filepath.Join(dir, "sentinel.log"),
		stopSig: syscall.SIGTERM,
		command: func() *exec.Cmd { return exec.Command(bin, conf, "--sentinel") },
	}}
	s.ready = s.ping
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// SentinelAddrs returns the host:port of every sentinel.
func (g *Sentinels) SentinelAddrs() []string {
	addrs := make([]string, len(g.Sentinels))
	for i, s := range g.Sentinels {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Topology returns the group as a Topology named "sentinel".
func (g *Sentinels) Topology() Topology {
	return Topology{Name: "sentinel", SentinelMaster: g.Master, SentinelAddrs: g.SentinelAddrs()}
}

// Stop stops the sentinels, then the data nodes.
func (g *Sentinels) Stop() error {
	var errs []error
	for _, s := range slices.Concat(g.Sentinels, g.Data) {
		errs = append(errs, s.Stop())
	}
	return errors.Join(errs...)
}

// CurrentMaster returns the data node the running sentinels agree is the
// master, and fails when they do not agree.
func (g *Sentinels) CurrentMaster(ctx context.Context) (*Redis, error) {
	var addr string
	for _, s := range g.Sentinels {
		if !s.Running() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
		got, err := sc.GetMasterAddrByName(ctx, g.Master).Result()
		sc.Close()
		if err != nil {
			return nil, fmt.Errorf("sentinel %s: %w", s.Addr(), err)
		}
		a := strings.Join(got, ":")
		if addr != "" && a != addr {
			return nil, fmt.Errorf("sentinels disagree on the master: %s and %s", addr, a)
		}
		addr = a
	}
	for _, node := range g.Data {
		if node.Addr() == addr {
			return node, nil
		}
	}
	return nil, fmt.Errorf("the sentinels name master %q, no data node of the group", addr)
}

// healthy tells whether the group can fail over: the running sentinels
// agree on a master that runs, is a master, and has every other running
// data node as a replica in sync; each sentinel sees those replicas up and
// the other running sentinels.
func (g *Sentinels) healthy(ctx context.Context) error {
	master, err := g.CurrentMaster(ctx)
	if err != nil {
		return err
	}
	if !master.Running() {
		return fmt.Errorf("the master %s does not run", master.Addr())
	}
	repl, err := master.info(ctx, "replication")
	if err != nil {
		return fmt.Errorf("master %s: %w", master.Addr(), err)
	}
	replicas := 0
	for _, node := range g.Data {
		if node == master || !node.Running() {
			continue
		}
		replicas++
		r, err := node.info(ctx, "replication")
		if err != nil || r["role"] != "slave" || r["master_port"] != strconv.Itoa(master.port) || r["master_link_status"] != "up" {
			return fmt.Errorf("replica %s not in sync with %s: %v %v", node.Addr(), master.Addr(), r, err)
		}
	}
	if repl["role"] != "master" || repl["connected_slaves"] != strconv.Itoa(replicas) {
		return fmt.Errorf("master %s: role %s, %s replicas", master.Addr(), repl["role"], repl["connected_slaves"])
	}
	sentinels := 0
	for _, s := range g.Sentinels {
		if s.Running() {
			sentinels++
		}
	}
	for _, s := range g.Sentinels {
		if !s.Running() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
		seen, err := sc.Replicas(ctx, g.Master).Result()
		var others []map[string]string
		if err == nil {
			others, err = sc.Sentinels(ctx, g.Master).Result()
		}
		sc.Close()
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", s.Addr(), err)
		}
		up := 0
		for _, r := range seen {
			if flags := r["flags"]; flags == "slave" {
				up++
			}
		}
		if up != replicas || len(others) != sentinels-1 {
			return fmt.Errorf("sentinel %s sees %d of %d replicas up and %d of %d other sentinels", s.Addr(), up, replicas, len(others), sentinels-1)
		}
	}
	return nil
}

// WaitHealthy waits until the group can fail over (see healthy): after its
// start, after a failover, and after a node started again has caught up.
func (g *Sentinels) WaitHealthy(ctx context.Context) error {
	return poll(ctx, "redis sentinel group healthy", func() error { return g.healthy(ctx) })
}

// poll calls check until it succeeds or ctx ends, and then returns the
// last failure.
func poll(ctx context.Context, what string, check func() error) error {
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (%v)", what, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
