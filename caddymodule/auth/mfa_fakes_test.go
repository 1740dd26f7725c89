package auth

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/authgate/authgate/caddymodule/factors"
)

// fakeFactors keeps second factors in memory with the semantics of
// factors.Registry, and its TOTP rules (factors.Match: the skew, a step
// spent for ever) run as they do over PostgreSQL.
type fakeFactors struct {
	mu       sync.Mutex
	totp     map[int64]*fakeTOTP
	recovery map[int64]map[string]bool // normal forms of the codes left
	others   map[int64][]string        // other kinds ("passkey")
	next     int
	err      error
}

type fakeTOTP struct {
	secret    []byte
	confirmed bool
	last      int64
}

func newFakeFactors() *fakeFactors {
	return &fakeFactors{totp: map[int64]*fakeTOTP{}, recovery: map[int64]map[string]bool{}, others: map[int64][]string{}}
}

func (f *fakeFactors) Kinds(_ context.Context, id int64) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var kinds []string
	if t := f.totp[id]; t != nil && t.confirmed {
		kinds = append(kinds, factors.KindTOTP)
	}
	return append(kinds, f.others[id]...), nil
}

func (f *fakeFactors) List(ctx context.Context, id int64) ([]factors.Enrolment, error) {
	kinds, err := f.Kinds(ctx, id)
	if err != nil {
		return nil, err
	}
	var list []factors.Enrolment
	for _, k := range kinds {
		list = append(list, factors.Enrolment{Kind: k})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.recovery[id]); n > 0 {
		list = append(list, factors.Enrolment{Kind: factors.KindRecovery, Remaining: n})
	}
	return list, nil
}

func (f *fakeFactors) RemoveAll(_ context.Context, id int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	n := len(f.others[id])
	if t := f.totp[id]; t != nil && t.confirmed {
		n++
	}
	if len(f.recovery[id]) > 0 {
		n++
	}
	delete(f.totp, id)
	delete(f.recovery, id)
	delete(f.others, id)
	return n, nil
}

func (f *fakeFactors) PendingTOTP(_ context.Context, id int64) ([]byte, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, false, f.err
	}
	if f.totp[id] == nil {
		secret, err := factors.NewSecret()
		if err != nil {
			return nil, false, err
		}
		f.totp[id] = &fakeTOTP{secret: secret}
	}
	return f.totp[id].secret, f.totp[id].confirmed, nil
}

func (f *fakeFactors) ConfirmTOTP(_ context.Context, id int64, code string, now time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	t := f.totp[id]
	if t == nil || t.confirmed {
		return false, nil
	}
	step, ok := factors.Match(t.secret, code, now, -1<<62)
	if ok {
		t.confirmed, t.last = true, step
	}
	return ok, nil
}

func (f *fakeFactors) CheckTOTP(_ context.Context, id int64, code string, now time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	t := f.totp[id]
	if t == nil || !t.confirmed {
		return false, nil
	}
	step, ok := factors.Match(t.secret, code, now, t.last)
	if ok {
		t.last = step
	}
	return ok, nil
}

func (f *fakeFactors) RemoveTOTP(_ context.Context, id int64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	t := f.totp[id]
	delete(f.totp, id)
	return t != nil && t.confirmed, nil
}

func (f *fakeFactors) RecoveryLeft(_ context.Context, id int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.recovery[id]), f.err
}

func (f *fakeFactors) NewRecoveryCodes(_ context.Context, id int64) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	f.next++
	set := map[string]bool{}
	var codes []string
	for i := range factors.RecoveryCodes {
		code := fmt.Sprintf("%05d-%05d", f.next, i)
		codes = append(codes, code)
		set[factors.NormalRecoveryCode(code)] = true
	}
	f.recovery[id] = set
	return codes, nil
}

func (f *fakeFactors) UseRecoveryCode(_ context.Context, id int64, code string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	normal := factors.NormalRecoveryCode(code)
	if normal == "" || !f.recovery[id][normal] {
		return false, nil
	}
	delete(f.recovery[id], normal)
	return true, nil
}

func (f *fakeFactors) DropRecoveryCodes(_ context.Context, id int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	n := len(f.recovery[id])
	delete(f.recovery, id)
	return n, nil
}

// enrol gives the user a confirmed TOTP, as if enrolled some steps ago,
// and returns its secret.
func (f *fakeFactors) enrol(id int64) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	secret, _ := factors.NewSecret()
	f.totp[id] = &fakeTOTP{secret: secret, confirmed: true, last: 0}
	return secret
}

func (f *fakeFactors) addKind(id int64, kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.others[id], kind) {
		f.others[id] = append(f.others[id], kind)
	}
}

func (f *fakeFactors) recoveryLeft(id int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.recovery[id])
}

type fakeTicket struct {
	uid   int64
	tries int
}

// fakeTickets keeps pending logins like factors.Tickets.
type fakeTickets struct {
	mu   sync.Mutex
	live map[string]*fakeTicket
	next int
	err  error
}

func (f *fakeTickets) Issue(_ context.Context, id int64) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.next++
	ticket := fmt.Sprintf("ticket-%d", f.next)
	f.live[ticket] = &fakeTicket{uid: id}
	return ticket, nil
}

func (f *fakeTickets) Spend(_ context.Context, ticket string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	t := f.live[ticket]
	if t == nil {
		return 0, factors.ErrInvalidTicket
	}
	if t.tries++; t.tries > factors.MaxTicketTries {
		delete(f.live, ticket)
		return 0, factors.ErrInvalidTicket
	}
	return t.uid, nil
}

func (f *fakeTickets) Peek(_ context.Context, ticket string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	if t := f.live[ticket]; t != nil {
		return t.uid, nil
	}
	return 0, factors.ErrInvalidTicket
}

func (f *fakeTickets) Consume(_ context.Context, ticket string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	t := f.live[ticket]
	if t == nil {
		return 0, factors.ErrInvalidTicket
	}
	delete(f.live, ticket)
	return t.uid, nil
}

func (f *fakeTickets) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.live)
}
