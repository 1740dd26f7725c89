package auth

import (
	"sync"
	"time"
)

// createdMax bounds the creation times kept in memory: about 50 bytes
// each, so a few MB at most, for what would otherwise be one PostgreSQL
// query per users/info call.
const createdMax = 100_000

// createdTimes keeps accounts' creation times by id. A creation time never
// changes and an id is never given to another account, so an entry can
// never be wrong, only missing; nothing needs to tell other instances.
type createdTimes struct {
	mu  sync.RWMutex
	m   map[int64]time.Time
	max int
}

func newCreatedTimes(max int) *createdTimes {
	return &createdTimes{m: map[int64]time.Time{}, max: max}
}

func (c *createdTimes) get(id int64) (time.Time, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.m[id]
	return t, ok
}

// put keeps t for id; when full, it first forgets an entry (whichever the
// map's iteration gives: any is as good as another to lose).
func (c *createdTimes) put(id int64, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; !ok && len(c.m) >= c.max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[id] = t
}
