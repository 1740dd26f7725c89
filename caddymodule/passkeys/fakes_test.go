package passkeys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/store"
)

// fakeCreds keeps passkeys in memory, with the store's rules: a unique
// credential id, a bound per account, a counter that only moves forward.
type fakeCreds struct {
	mu   sync.Mutex
	list []Passkey
	down bool // every call fails as a store that is down
}

var errDown = &store.OutageError{Store: "postgres", Err: errors.New("connection refused")}

func (f *fakeCreds) List(_ context.Context, userID int64) ([]Passkey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errDown
	}
	var out []Passkey
	for _, p := range f.list {
		if p.UserID == userID {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakeCreds) ByCredentialID(_ context.Context, id []byte) (Passkey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return Passkey{}, errDown
	}
	if i := f.find(id); i >= 0 {
		return f.list[i], nil
	}
	return Passkey{}, ErrNotFound
}

func (f *fakeCreds) find(id []byte) int {
	for i, p := range f.list {
		if bytes.Equal(p.ID, id) {
			return i
		}
	}
	return -1
}

func (f *fakeCreds) Add(_ context.Context, p Passkey, max int) (Passkey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.find(p.ID) >= 0 {
		return Passkey{}, ErrExists
	}
	n := 0
	for _, q := range f.list {
		if q.UserID == p.UserID {
			n++
		}
	}
	if n >= max {
		return Passkey{}, ErrTooMany
	}
	p.Created = time.Now()
	f.list = append(f.list, p)
	return p, nil
}

func (f *fakeCreds) Rename(_ context.Context, userID int64, id []byte, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.find(id)
	if i < 0 || f.list[i].UserID != userID {
		return ErrNotFound
	}
	f.list[i].Name = name
	return nil
}

func (f *fakeCreds) Remove(_ context.Context, userID int64, id []byte) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.find(id)
	if i < 0 || f.list[i].UserID != userID {
		return "", ErrNotFound
	}
	name := f.list[i].Name
	f.list = append(f.list[:i], f.list[i+1:]...)
	return name, nil
}

func (f *fakeCreds) RemoveAll(_ context.Context, userID int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept, n := f.list[:0], 0
	for _, p := range f.list {
		if p.UserID == userID {
			n++
			continue
		}
		kept = append(kept, p)
	}
	f.list = kept
	return n, nil
}

func (f *fakeCreds) Used(_ context.Context, id []byte, count uint32, flags byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.find(id)
	if i < 0 || !f.list[i].Suspended.IsZero() || !(f.list[i].SignCount < count || (f.list[i].SignCount == 0 && count == 0)) {
		return ErrNotFound
	}
	f.list[i].SignCount, f.list[i].Flags, f.list[i].LastUsed = count, flags, time.Now()
	return nil
}

func (f *fakeCreds) Suspend(_ context.Context, id []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := f.find(id); i >= 0 && f.list[i].Suspended.IsZero() {
		f.list[i].Suspended = time.Now()
	}
	return nil
}

func (f *fakeCreds) Count(_ context.Context, userID int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, p := range f.list {
		if p.UserID == userID && p.Suspended.IsZero() {
			n++
		}
	}
	return n, nil
}

// get returns the stored passkey with the id, or fails the test.
func (f *fakeCreds) get(t *testing.T, id []byte) Passkey {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.find(id)
	if i < 0 {
		t.Fatalf("no passkey %x stored", id)
	}
	return f.list[i]
}

// fakeCeremonies keeps ceremonies in memory, single use like Redis's
// GETDEL.
type fakeCeremonies struct {
	mu    sync.Mutex
	state map[Binding][]byte
}

func (f *fakeCeremonies) Save(_ context.Context, b Binding, state []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state == nil {
		f.state = map[Binding][]byte{}
	}
	f.state[b] = state
	return nil
}

func (f *fakeCeremonies) Take(_ context.Context, b Binding) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.state[b]
	if !ok {
		return nil, ErrNoCeremony
	}
	delete(f.state, b)
	return st, nil
}

// expire ends every ceremony, as their time running out would.
func (f *fakeCeremonies) expire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.state)
}

func (f *fakeCeremonies) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.state)
}

type fakeAccounts map[int64]accounts.User

func (f fakeAccounts) ByID(_ context.Context, id int64) (accounts.User, error) {
	if u, ok := f[id]; ok {
		return u, nil
	}
	return accounts.User{}, accounts.ErrNotFound
}

// counts records metrics and audit events.
type counts struct {
	mu     sync.Mutex
	byKey  map[string]int
	events []string
}

func (c *counts) MFA(factor, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil {
		c.byKey = map[string]int{}
	}
	c.byKey[factor+"/"+result]++
}

func (c *counts) enrolled(_ context.Context, u accounts.User, ip, kind string) ([]string, error) {
	c.tell("enrolled " + u.Username + " " + ip + " " + kind)
	return []string{"code-1", "code-2"}, nil
}

func (c *counts) removed(_ context.Context, u accounts.User, ip, kind string) error {
	c.tell("removed " + u.Username + " " + ip + " " + kind)
	return nil
}

func (c *counts) tell(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, line)
}

func (c *counts) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[key]
}

func (c *counts) eventList() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.events)
}
