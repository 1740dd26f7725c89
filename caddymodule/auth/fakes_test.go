package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/mail"
	"github.com/authgate/authgate/caddymodule/onetime"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/store"
	"github.com/authgate/authgate/caddymodule/throttle"
)

// In-memory fakes of what the service needs, with the semantics the real
// stores document, so that its rules are tested without servers. Each
// fails every call with err when err is set (the store is down).

// outage is what a store that is down returns.
func outage(name string) error {
	return &store.OutageError{Store: name, Err: errors.New("connection refused")}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fakeAccounts struct {
	mu    sync.Mutex
	clock *fakeClock
	users map[int64]accounts.User
	next  int64
	calls int
	err   error
	// createErr, when set, is what Create returns (a concurrent
	// registration that won the race: accounts.ErrExists).
	createErr error
}

func (f *fakeAccounts) call() error {
	f.calls++
	return f.err
}

func (f *fakeAccounts) ByName(_ context.Context, canonical, typed string) (accounts.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call(); err != nil {
		return accounts.User{}, err
	}
	var found *accounts.User
	for _, u := range f.users {
		// An account that kept its exact name wins when typed exactly.
		if u.Canonical == "" && u.Username == typed {
			return u, nil
		}
		if u.Canonical == canonical {
			found = &u
		}
	}
	if found == nil {
		return accounts.User{}, accounts.ErrNotFound
	}
	return *found, nil
}

func (f *fakeAccounts) ByID(_ context.Context, id int64) (accounts.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call(); err != nil {
		return accounts.User{}, err
	}
	u, ok := f.users[id]
	if !ok {
		return accounts.User{}, accounts.ErrNotFound
	}
	return u, nil
}

func (f *fakeAccounts) ByUserhash(_ context.Context, userhash string) (accounts.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call(); err != nil {
		return accounts.User{}, err
	}
	for _, u := range f.users {
		if u.Userhash == userhash {
			return u, nil
		}
	}
	return accounts.User{}, accounts.ErrNotFound
}

func (f *fakeAccounts) Create(_ context.Context, canonical, email, hash string) (accounts.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call(); err != nil {
		return accounts.User{}, err
	}
	if f.createErr != nil {
		return accounts.User{}, f.createErr
	}
	for _, u := range f.users {
		if u.Canonical == canonical {
			return accounts.User{}, accounts.ErrExists
		}
	}
	return f.add(accounts.User{Username: canonical, Canonical: canonical, Email: email, PasswordHash: hash}), nil
}

// add stores u with the next id; the caller holds mu.
func (f *fakeAccounts) add(u accounts.User) accounts.User {
	f.next++
	u.ID = f.next
	u.Userhash = fmt.Sprintf("%032x", f.next)
	u.CreatedAt, u.UpdatedAt = f.clock.now(), f.clock.now()
	f.users[u.ID] = u
	return u
}

func (f *fakeAccounts) SetPassword(_ context.Context, id int64, hash string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call(); err != nil {
		return err
	}
	u, ok := f.users[id]
	if !ok {
		return accounts.ErrNotFound
	}
	u.PasswordHash, u.UpdatedAt = hash, f.clock.now()
	f.users[id] = u
	return nil
}

func (f *fakeAccounts) SetEmail(_ context.Context, id int64, email string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call(); err != nil {
		return err
	}
	u, ok := f.users[id]
	if !ok {
		return accounts.ErrNotFound
	}
	u.Email, u.UpdatedAt = email, f.clock.now()
	f.users[id] = u
	return nil
}

func (f *fakeAccounts) get(id int64) accounts.User {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.users[id]
}

func (f *fakeAccounts) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.users)
}

type fakeSessions struct {
	mu    sync.Mutex
	clock *fakeClock
	live  map[string]sessions.Session // by token
	next  int
	err   error
}

func (f *fakeSessions) Create(_ context.Context, sess sessions.Session) (string, sessions.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", sessions.Session{}, f.err
	}
	f.next++
	token := fmt.Sprintf("%s.secret-%d", sess.Userhash, f.next)
	sess.ID = fmt.Sprintf("id-%d", f.next)
	sess.Created = f.clock.now().Unix()
	sess.Expires = f.clock.now().Add(24 * time.Hour).Unix()
	f.live[token] = sess
	return token, sess, nil
}

func (f *fakeSessions) Lookup(_ context.Context, token string) (sessions.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return sessions.Session{}, f.err
	}
	sess, ok := f.live[token]
	if !ok {
		return sessions.Session{}, sessions.ErrNotFound
	}
	return sess, nil
}

func (f *fakeSessions) Delete(_ context.Context, token string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	delete(f.live, token)
	return nil
}

func (f *fakeSessions) RevokeUser(_ context.Context, userhash, keepID string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	n := 0
	for token, sess := range f.live {
		if sess.Userhash == userhash && sess.ID != keepID {
			delete(f.live, token)
			n++
		}
	}
	return n, nil
}

func (f *fakeSessions) List(_ context.Context, userhash string) ([]sessions.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []sessions.Session
	for _, sess := range f.live {
		if sess.Userhash == userhash {
			out = append(out, sess)
		}
	}
	return out, nil
}

func (f *fakeSessions) End(_ context.Context, userhash, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	for token, sess := range f.live {
		if sess.Userhash == userhash && sess.ID == id {
			delete(f.live, token)
			return nil
		}
	}
	return sessions.ErrNotFound
}

func (f *fakeSessions) SetEmail(_ context.Context, userhash, email string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	for token, sess := range f.live {
		if sess.Userhash == userhash {
			sess.Email = email
			f.live[token] = sess
		}
	}
	return nil
}

// of returns the ids of the user's live sessions.
func (f *fakeSessions) of(userhash string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for _, sess := range f.live {
		if sess.Userhash == userhash {
			ids = append(ids, sess.ID)
		}
	}
	return ids
}

type fakeOTP struct {
	reqid, code string
	tries       int
}

type fakeReset struct {
	id     int64
	issued time.Time
}

type fakeCodes struct {
	mu     sync.Mutex
	clock  *fakeClock
	otps   map[string]*fakeOTP // by userhash
	resets map[string]fakeReset
	next   int
	checks int // guesses spent at OTPs
	err    error
}

func (f *fakeCodes) TTL() time.Duration { return 10 * time.Minute }

func (f *fakeCodes) IssueOTP(_ context.Context, userhash string) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", "", f.err
	}
	f.next++
	o := &fakeOTP{reqid: fmt.Sprintf("req-%d", f.next), code: fmt.Sprintf("%06d", 100000+f.next)}
	f.otps[userhash] = o
	return o.reqid, o.code, nil
}

func (f *fakeCodes) CheckOTP(_ context.Context, userhash, reqid, code string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.checks++
	o, ok := f.otps[userhash]
	if !ok {
		return onetime.ErrInvalid
	}
	if o.tries++; o.tries > onetime.MaxGuesses {
		delete(f.otps, userhash)
		return onetime.ErrInvalid
	}
	if o.reqid != reqid || o.code != code {
		return onetime.ErrInvalid
	}
	delete(f.otps, userhash)
	return nil
}

func (f *fakeCodes) DropOTP(ctx context.Context, userhash string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if err := ctx.Err(); err != nil {
		return err // as go-redis does with a done context
	}
	delete(f.otps, userhash)
	return nil
}

func (f *fakeCodes) Decoy(name string) (string, string, error) {
	return fmt.Sprintf("%032x", len(name)), "decoy-req", nil
}

func (f *fakeCodes) IssueResetToken(_ context.Context, id int64) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.next++
	token := fmt.Sprintf("token-%d", f.next)
	f.resets[token] = fakeReset{id: id, issued: f.clock.now()}
	return token, nil
}

func (f *fakeCodes) ResetTokenUser(_ context.Context, token string) (int64, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, time.Time{}, f.err
	}
	r, ok := f.resets[token]
	if !ok {
		return 0, time.Time{}, onetime.ErrInvalid
	}
	return r.id, r.issued, nil
}

func (f *fakeCodes) ConsumeResetToken(_ context.Context, token string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	r, ok := f.resets[token]
	if !ok {
		return 0, onetime.ErrInvalid
	}
	delete(f.resets, token)
	return r.id, nil
}

func (f *fakeCodes) otp(userhash string) (fakeOTP, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.otps[userhash]
	if !ok {
		return fakeOTP{}, false
	}
	return *o, true
}

func (f *fakeCodes) resetLive(token string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.resets[token]
	return ok
}

// fakeThrottle counts like throttle.Limiter: before the attempt, one
// allowance of max per device, else per user, else per IP, taken back by
// Forget (all of it) and TakeBack (one); a refused attempt is not counted.
type fakeThrottle struct {
	mu       sync.Mutex
	max      int
	counts   map[string]int
	attempts []throttle.Subject
	err      error
}

func throttleKey(s throttle.Subject) string {
	switch {
	case s.Device != "":
		return s.Kind + "/device/" + s.Device
	case s.Username != "":
		return s.Kind + "/user/" + strings.ToLower(s.Username)
	}
	return s.Kind + "/ip/" + s.IP
}

func (f *fakeThrottle) Attempt(_ context.Context, s throttle.Subject) (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	f.attempts = append(f.attempts, s)
	key := throttleKey(s)
	if f.counts[key] >= f.max {
		return 7 * time.Minute, nil
	}
	f.counts[key]++
	return 0, nil
}

func (f *fakeThrottle) Forget(_ context.Context, s throttle.Subject) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	delete(f.counts, throttleKey(s))
	return nil
}

func (f *fakeThrottle) TakeBack(_ context.Context, s throttle.Subject) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if key := throttleKey(s); f.counts[key] > 0 {
		f.counts[key]--
	}
	return nil
}

func (f *fakeThrottle) UserKey(name string) string { return "uk-" + strings.ToLower(name) }

func (f *fakeThrottle) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[key]
}

func (f *fakeThrottle) set(key string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[key] = n
}

func (f *fakeThrottle) subjects() []throttle.Subject {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]throttle.Subject(nil), f.attempts...)
}

// fakeDevices signs a device cookie as "device:<user key>", and honours
// only that.
type fakeDevices struct{}

func (fakeDevices) Issue(userKey string) (string, time.Time) {
	return "device:" + userKey, time.Unix(1<<32, 0)
}

func (fakeDevices) Verify(value, userKey string) (string, bool) {
	if value != "device:"+userKey {
		return "", false
	}
	return "dev-" + userKey, true
}

// fakeHasher "hashes" pw as fake$pw, and counts every computation a real
// hasher would make.
type fakeHasher struct {
	mu                     sync.Mutex
	hashes, verifies, burn int
	err                    error
}

func (h *fakeHasher) Hash(_ context.Context, pw string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hashes++
	return "fake$" + pw, h.err
}

func (h *fakeHasher) Verify(_ context.Context, pw, encoded string) (bool, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.verifies++
	if h.err != nil {
		return false, false, h.err
	}
	// old$pw stands for a hash of outdated cost: right, but to be redone.
	if encoded == "old$"+pw {
		return true, true, nil
	}
	return encoded == "fake$"+pw, false, nil
}

func (h *fakeHasher) Burn(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.burn++
	return h.err
}

// computations are the hashes computed so far: hash, verify, burn.
func (h *fakeHasher) computations() [3]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return [3]int{h.hashes, h.verifies, h.burn}
}

type fakeMailer struct {
	mu   sync.Mutex
	sent []mail.Message
	err  error
	// during, when set, runs in the middle of every Send, e.g. to end the
	// request's context as a client that goes away does.
	during func()
}

func (m *fakeMailer) Send(_ context.Context, msg mail.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.during != nil {
		m.during()
	}
	if m.err != nil {
		return m.err
	}
	m.sent = append(m.sent, msg)
	return nil
}

func (m *fakeMailer) last(t *testing.T) mail.Message {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.sent) == 0 {
		t.Fatal("no mail sent")
	}
	return m.sent[len(m.sent)-1]
}

// fakeMetrics counts by "kind/label", e.g. "login/success".
type fakeMetrics struct {
	mu     sync.Mutex
	counts map[string]int
}

func (m *fakeMetrics) add(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts[key]++
}

func (m *fakeMetrics) Login(result string)   { m.add("login/" + result) }
func (m *fakeMetrics) Throttled(kind string) { m.add("throttled/" + kind) }
func (m *fakeMetrics) Mail(result string)    { m.add("mail/" + result) }
func (m *fakeMetrics) StoreError(s string)   { m.add("store_error/" + s) }
func (m *fakeMetrics) MFA(factor, result string) {
	m.add("mfa/" + factor + "/" + result)
}

func (m *fakeMetrics) snapshot() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.counts))
	for k, v := range m.counts {
		out[k] = v
	}
	return out
}

type event struct {
	name string
	data map[string]any
}

// rig is a Service over fresh fakes, with what they recorded.
type rig struct {
	svc      *Service
	clock    *fakeClock
	accounts *fakeAccounts
	sessions *fakeSessions
	codes    *fakeCodes
	throttle *fakeThrottle
	hasher   *fakeHasher
	mailer   *fakeMailer
	factors  *fakeFactors
	tickets  *fakeTickets
	metrics  *fakeMetrics
	logs     *observer.ObservedLogs

	mu     sync.Mutex
	events []event
}

// newRig returns a service with registration open, a throttle allowing 3
// failures per subject, and device cookies; change modifies its Config.
func newRig(t *testing.T, change ...func(*Config)) *rig {
	t.Helper()
	clock := &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	core, logs := observer.New(zap.DebugLevel)
	r := &rig{
		clock:    clock,
		accounts: &fakeAccounts{clock: clock, users: map[int64]accounts.User{}},
		sessions: &fakeSessions{clock: clock, live: map[string]sessions.Session{}},
		codes:    &fakeCodes{clock: clock, otps: map[string]*fakeOTP{}, resets: map[string]fakeReset{}},
		throttle: &fakeThrottle{max: 3, counts: map[string]int{}},
		hasher:   &fakeHasher{},
		mailer:   &fakeMailer{},
		factors:  newFakeFactors(),
		tickets:  &fakeTickets{live: map[string]*fakeTicket{}},
		metrics:  &fakeMetrics{counts: map[string]int{}},
		logs:     logs,
	}
	cfg := Config{
		Accounts: r.accounts, Sessions: r.sessions, Codes: r.codes, Throttle: r.throttle,
		Devices: fakeDevices{}, Hasher: r.hasher, Mailer: r.mailer, MailFrom: "gate@example.com",
		Registration: true, PasswordMinScore: 2,
		Factors: r.factors, Tickets: r.tickets,
		Metrics: r.metrics, Logger: zap.New(core), Now: clock.now,
		Emit: func(name string, data map[string]any) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.events = append(r.events, event{name, data})
		},
	}
	for _, f := range change {
		f(&cfg)
	}
	r.svc = New(cfg)
	return r
}

// user adds an account directly to the store, hashed by the fake hasher.
func (r *rig) user(name, pw, email string) accounts.User {
	r.accounts.mu.Lock()
	defer r.accounts.mu.Unlock()
	return r.accounts.add(accounts.User{Username: name, Canonical: name, Email: email, PasswordHash: "fake$" + pw})
}

// eventNames returns the names of the events emitted so far, without the
// "authgate." every one of them starts with.
func (r *rig) eventNames(t *testing.T) []string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, e := range r.events {
		name, ok := strings.CutPrefix(e.name, "authgate.")
		if !ok {
			t.Errorf("event %q outside authgate.*", e.name)
		}
		names = append(names, name)
	}
	return names
}

// event returns the data of the last event named name.
func (r *rig) event(t *testing.T, name string) map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].name == "authgate."+name {
			return r.events[i].data
		}
	}
	t.Fatalf("no event %s", name)
	return nil
}

// noSecrets fails when any log line or event carries one of secrets.
func (r *rig) noSecrets(t *testing.T, secrets ...string) {
	t.Helper()
	var all []string
	for _, entry := range r.logs.All() {
		all = append(all, fmt.Sprint(entry.Message, entry.ContextMap()))
	}
	r.mu.Lock()
	for _, e := range r.events {
		all = append(all, fmt.Sprint(e.name, e.data))
	}
	r.mu.Unlock()
	for _, line := range all {
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("a secret (%q) reached a log line or event: %s", s, line)
			}
		}
	}
}
