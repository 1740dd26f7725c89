package sessions

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Where returns the Redis key and hash field that hold the session of token:
// for tools and tests that look into Redis itself.
func Where(prefix, token string) (key, field string, ok bool) {
	userhash, secret, ok := split(token)
	if !ok {
		return "", "", false
	}
	sid := idOf(secret)
	return userKey(prefix, userhash), string(sid[:]), true
}

// Stored returns every session Redis holds under prefix, ended or not,
// user by user, oldest first: the stored effect that tests and tools check
// without knowing the layout. It scans the keyspace (every master of a
// cluster), so it is no tool for a request.
func Stored(ctx context.Context, rdb redis.UniversalClient, prefix string) ([]Session, error) {
	var (
		mu   sync.Mutex
		keys []string
	)
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, globEscape(prefix)+":{*}", 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		err = fmt.Errorf("listing stored sessions: a %T cannot scan", rdb)
	}
	if err != nil {
		return nil, err
	}
	slices.Sort(keys)
	var out []Session
	for _, key := range keys {
		userhash := strings.TrimSuffix(strings.TrimPrefix(key, prefix+":{"), "}")
		if !validUserhash(userhash) {
			continue
		}
		all, err := rdb.HGetAll(ctx, key).Result()
		if err != nil {
			return nil, fmt.Errorf("listing stored sessions: %s: %w", key, err)
		}
		out = append(out, decodeHash(userhash, all)...)
	}
	return out, nil
}

// globEscape quotes the characters SCAN's MATCH gives a meaning.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
