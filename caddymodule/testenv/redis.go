package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Redis server on 127.0.0.1 that keeps nothing on disk.
type Redis struct {
	server
}

// StartRedis starts redis-server on a free loopback port, with dir as its
// working directory and the home of its log.
func StartRedis(dir string) (*Redis, error) { return StartRedisOn(dir, 0) }

// StartRedisOn is StartRedis on the given port; 0 picks a free one.
func StartRedisOn(dir string, port int) (*Redis, error) { return startRedis(dir, port) }

// startRedis starts redis-server with more command-line options after the
// ones every server of ours has (later options win).
func startRedis(dir string, port int, args ...string) (*Redis, error) {
	bin, err := lookPath("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("redis directory: %w", err)
	}
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	r := &Redis{server{
		name:    "redis-server",
		port:    port,
		logPath: filepath.Join(dir, "redis.log"),
		stopSig: syscall.SIGTERM,
		command: func() *exec.Cmd {
			return exec.Command(bin, append([]string{
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--save", "",
				"--appendonly", "no",
				"--dir", dir,
				// A replica syncs at once rather than after the default 5s
				// spent waiting for more replicas to share the transfer.
				"--repl-diskless-sync-delay", "0",
			}, args...)...)
		},
	}}
	r.ready = r.ping
	if err := r.Start(); err != nil {
		return nil, err
	}
	return r, nil
}

// URL returns the server's database 0 as a go-redis URL.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// Addr returns the server's host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// client returns a client of this one server, with short timeouts: for
// asking a node of a topology about its state.
func (r *Redis) client() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:        r.Addr(),
		DialTimeout: time.Second,
		ReadTimeout: time.Second,
		MaxRetries:  -1,
	})
}

func (r *Redis) ping(ctx context.Context) error {
	c := r.client()
	defer c.Close()
	return c.Ping(ctx).Err()
}

// ScriptReplies makes rdb answer every script it runs (EVALSHA and EVAL)
// with reply, once Redis has run it: for the answers a script of ours
// never gives, which no Redis can be made to send.
func ScriptReplies(rdb redis.UniversalClient, reply any) {
	rdb.AddHook(scriptReplies{reply})
}

type scriptReplies struct{ reply any }

func (h scriptReplies) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h scriptReplies) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h scriptReplies) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if c, ok := cmd.(*redis.Cmd); ok && err == nil && (c.Name() == "evalsha" || c.Name() == "eval") {
			c.SetVal(h.reply)
		}
		return err
	}
}
