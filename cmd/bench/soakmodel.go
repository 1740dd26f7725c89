package main

import (
	"strings"
	"sync"
	"time"
)

// The soak's model of what Redis must hold. Every action of the soak
// notes here what it did to the live data (sessions started and ended,
// codes issued and used, throttle counters touched, announcements of ended
// sessions), and a sample compares Redis with it: keys beyond what the
// model allows are data nobody can use any more, which is a leak.
//
// The server's clock starts a key's lifetime somewhere between the
// client's sending and its answer, so the model holds each such time as
// an interval and allows a range: lo keys certainly alive, hi keys
// possibly alive. For the throttle counters and the announcements it
// gives an upper bound only (a success clears a counter, an announcement
// heard by no instance makes no key). The traffic goes on while Redis is
// scanned: every action under way then (or done meanwhile, as SCAN may
// have passed a key's place before or after it) widens the range by what
// it may add or remove.

// span is when the server did something: between from and to.
type span struct{ from, to time.Time }

// aliveSurely tells whether a key that lives ttl from the span surely
// lives at t.
func (s span) aliveSurely(ttl time.Duration, t time.Time) bool { return t.Before(s.from.Add(ttl)) }

// alivePerhaps tells whether it may still live at t.
func (s span) alivePerhaps(ttl time.Duration, t time.Time) bool { return t.Before(s.to.Add(ttl)) }

// keyRange is what a kind of key may number: lo to hi.
type keyRange struct{ lo, hi int }

func (r keyRange) holds(n int) bool { return n >= r.lo && n <= r.hi }

// keyKinds are the kinds of keys in the order a report shows them.
var keyKinds = []string{"session", "index", "otp", "throttle", "heard", "other"}

// keyKind names the kind of a key of the soak's prefix (see
// caddymodule/sessions, onetime and throttle for the layout).
func keyKind(prefix, key string) string {
	rest, ok := strings.CutPrefix(key, prefix+":")
	if !ok {
		return "other"
	}
	switch {
	case strings.HasPrefix(rest, "throttle:"):
		return "throttle"
	case strings.HasPrefix(rest, "heard:"):
		return "heard"
	case strings.HasPrefix(rest, "{"):
		_, tail, ok := strings.Cut(rest, "}:")
		switch {
		case !ok:
			return "other"
		case strings.HasPrefix(tail, "session:"):
			return "session"
		case tail == "sessions":
			return "index"
		case tail == "otp":
			return "otp"
		}
	}
	return "other"
}

// lifetimes are the settings of the soak's Caddy that decide how long
// keys live.
type lifetimes struct {
	session, otp           time.Duration
	userWindow, ipWindow   time.Duration // throttle_user, throttle_ip
	codesWindow            time.Duration // throttle_codes
	heard                  time.Duration // an announcement's count (caddymodule/sessions)
	maxSessions            int
	clock                  time.Duration // slack for the servers' and the client's clocks
	sessionExpiresRounding time.Duration // a session's record says its end in whole seconds
}

// userState is the model of one account's live data.
type userState struct {
	sessions   []modelSession // oldest first
	indexUntil time.Time      // when the index key ends at the latest, zero when gone for sure
	otp        *span          // a code issued and not used, if any
	// lost is when an action as the user went wrong: since then the model
	// does not know the user's keys, only how long they may live.
	lost time.Time
}

type modelSession struct {
	token string
	at    span
}

// keyModel is the model of all accounts, the counters and the announcements.
type keyModel struct {
	mu       sync.Mutex
	life     lifetimes
	users    map[string]*userState // by username
	counters map[string]counterTouch
	heard    []time.Time // when each announcement was answered
	pending  []*pending
}

// pending is an action under way: the keys of each kind it may add, and
// those it may take away (or add unseen by a scan) from the ones the model
// counts as surely there.
type pending struct {
	begun, ended time.Time
	add, sub     map[string]int
}

type counterTouch struct {
	last   time.Time
	window time.Duration
}

func newKeyModel(life lifetimes) *keyModel {
	return &keyModel{life: life, users: map[string]*userState{}, counters: map[string]counterTouch{}}
}

func (m *keyModel) user(name string) *userState {
	u := m.users[name]
	if u == nil {
		u = &userState{}
		m.users[name] = u
	}
	return u
}

// usable returns the user's sessions that the gate surely still accepts
// for margin more, oldest first.
func (m *keyModel) usable(name string, now time.Time, margin time.Duration) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, s := range m.user(name).sessions {
		// The record's end is cut to whole seconds: the gate refuses the
		// session up to a second before its key ends.
		if s.at.aliveSurely(m.life.session-m.life.sessionExpiresRounding-m.life.clock, now.Add(margin)) {
			out = append(out, s.token)
		}
	}
	return out
}

// stable tells whether each of the user's sessions is surely alive or
// surely gone for the whole of [t, t+horizon]: only then does the model
// know which ones a login in that time ends beyond max_sessions (the
// server first forgets the sessions that have ended).
func (m *keyModel) stable(name string, t time.Time, horizon time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.user(name).sessions {
		ttl := m.life.session
		if !s.at.aliveSurely(ttl-m.life.clock, t.Add(horizon)) && s.at.alivePerhaps(ttl+m.life.clock, t) {
			return false
		}
	}
	return true
}

// loggedIn notes a session started at; the oldest beyond max_sessions end,
// each with an announcement. It returns how many ended so.
func (m *keyModel) loggedIn(name, token string, at span) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.user(name)
	// The server first drops the index entries of sessions that have
	// ended; the caller made sure that none is in doubt (stable).
	live := u.sessions[:0]
	for _, s := range u.sessions {
		if s.at.alivePerhaps(m.life.session+m.life.clock, at.from) {
			live = append(live, s)
		}
	}
	u.sessions = append(live, modelSession{token, at})
	ended := 0
	for len(u.sessions) > m.life.maxSessions {
		u.sessions = u.sessions[1:]
		m.heard = append(m.heard, at.to)
		ended++
	}
	u.indexUntil = at.to.Add(m.life.session)
	return ended
}

// loggedOut notes the end of one session, with its announcement.
func (m *keyModel) loggedOut(name, token string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.user(name)
	for i, s := range u.sessions {
		if s.token == token {
			u.sessions = append(u.sessions[:i:i], u.sessions[i+1:]...)
			break
		}
	}
	m.heard = append(m.heard, at)
}

// passwordChanged notes a password reset: every session and code of the
// user ends, with one announcement.
func (m *keyModel) passwordChanged(name string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.user(name)
	u.sessions, u.otp, u.indexUntil = nil, nil, time.Time{}
	m.heard = append(m.heard, at)
}

// lose notes that the user's state is not known since at: the action
// that went wrong may have started a session or left a code.
func (m *keyModel) lose(name string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.user(name).lost = at
}

// codeIssued notes a new code for the user; it replaces any earlier one.
func (m *keyModel) codeIssued(name string, at span) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.user(name).otp = &at
}

// codeGone notes that the user's code is used up or dropped.
func (m *keyModel) codeGone(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.user(name).otp = nil
}

// touched notes that a request may have made or kept the throttle
// counters named (by kind, scope and subject as the client knows them),
// each living window from its first attempt.
func (m *keyModel) touched(at time.Time, window time.Duration, counters ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range counters {
		m.counters[c] = counterTouch{last: at, window: window}
	}
}

// begin notes an action under way; end it once the model knows what it did.
func (m *keyModel) begin(add, sub map[string]int) *pending {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := &pending{begun: time.Now(), add: add, sub: sub}
	m.pending = append(m.pending, p)
	return p
}

func (m *keyModel) end(p *pending) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p.ended = time.Now()
}

// sessionsOf returns how many sessions the model holds for the user.
func (m *keyModel) sessionsOf(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.user(name).sessions)
}

// expect returns what Redis may hold when scanned from from to to.
func (m *keyModel) expect(from, to time.Time) map[string]keyRange {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.life
	r := map[string]keyRange{}
	add := func(kind string, surely, perhaps bool) {
		kr := r[kind]
		if surely {
			kr.lo++
		}
		if perhaps {
			kr.hi++
		}
		r[kind] = kr
	}
	for _, u := range m.users {
		known := u.lost.IsZero()
		anySure := false
		for _, s := range u.sessions {
			sure := known && s.at.aliveSurely(l.session-l.clock, to)
			anySure = anySure || sure
			add("session", sure, s.at.alivePerhaps(l.session+l.clock, from))
		}
		lostSpan := span{u.lost, u.lost}
		lostKey := func(ttl time.Duration) bool { return !known && lostSpan.alivePerhaps(ttl+l.clock, from) }
		add("index", anySure, from.Before(u.indexUntil.Add(l.clock)) || lostKey(l.session))
		if u.otp != nil {
			add("otp", known && u.otp.aliveSurely(l.otp-l.clock, to), u.otp.alivePerhaps(l.otp+l.clock, from))
		}
		// What the action that went wrong may have made.
		add("session", false, lostKey(l.session))
		add("otp", false, u.otp == nil && lostKey(l.otp))
	}
	for _, c := range m.counters {
		add("throttle", false, from.Before(c.last.Add(c.window+l.clock)))
	}
	// Old announcements are of no more use to the model.
	kept := m.heard[:0]
	for _, at := range m.heard {
		if from.Before(at.Add(l.heard + l.clock)) {
			kept = append(kept, at)
			add("heard", false, true)
		}
	}
	m.heard = kept
	active := m.pending[:0]
	for _, p := range m.pending {
		if !p.ended.IsZero() && p.ended.Before(from.Add(-time.Minute)) {
			continue // of no more use
		}
		active = append(active, p)
		if p.begun.Before(to) && (p.ended.IsZero() || p.ended.After(from)) {
			for k, n := range p.add {
				kr := r[k]
				kr.hi += n
				r[k] = kr
			}
			for k, n := range p.sub {
				kr := r[k]
				kr.lo = max(0, kr.lo-n)
				r[k] = kr
			}
		}
	}
	m.pending = active
	for _, k := range keyKinds {
		r[k] = r[k] // every kind present, "other" with 0–0
	}
	return r
}
