// Package factors keeps the users' second factors: an authenticator app
// (TOTP, RFC 6238) and recovery codes in PostgreSQL, and the pending second
// step of a login (a ticket) in Redis. A Registry answers "has this user a
// second factor, and which" for every kind at once: TOTP is built in, and
// other kinds (passkeys) join it as a Provider.
//
// Tables (migration accounts/migrations/003_second_factors.sql), in the
// accounts schema:
//
//	totp            one row per user: the secret sealed with AES-256-GCM
//	                (the user id as associated data), confirmed_at (NULL
//	                while the enrolment awaits its first code) and
//	                last_step, the newest time step a code was accepted for
//	recovery_codes  an HMAC-SHA256 of each unused recovery code
package factors

import (
	"context"
	"errors"
	"time"
)

// The kinds of second factor this package knows. Other packages add theirs
// through Registry.Add.
const (
	KindTOTP = "totp"
	// KindRecovery are the recovery codes: a fallback that counts as a
	// second factor only beside another one.
	KindRecovery = "recovery"
)

// Enrolment is one second factor of a user as the account page and the
// operator see it: never its secret.
type Enrolment struct {
	Kind string
	// Name tells apart several factors of one kind (a passkey's name); ""
	// for TOTP and recovery codes.
	Name string
	// Created is when it was enrolled (for TOTP: confirmed).
	Created time.Time
	// LastUsed is when it last served a login; zero: never.
	LastUsed time.Time
	// Remaining is how many recovery codes are left (KindRecovery only).
	Remaining int
}

// Provider is one kind of second factor kept elsewhere (passkeys): the
// registry asks it which factors of its kind a user has, and removes them
// with the others.
type Provider interface {
	// Kind names the factor ("passkey"); it is what Registry.Kinds lists.
	Kind() string
	// List returns the user's confirmed factors of this kind.
	List(ctx context.Context, userID int64) ([]Enrolment, error)
	// RemoveAll removes every factor of this kind of the user and returns
	// how many there were.
	RemoveAll(ctx context.Context, userID int64) (int, error)
}

// Registry is every kind of second factor: the TOTP and recovery codes of
// its Store, and the providers added to it. It is safe for concurrent use
// once the providers are added (before it is used).
type Registry struct {
	*Store
	providers []Provider
}

// NewRegistry returns a registry over store, with TOTP as its first kind.
func NewRegistry(store *Store) *Registry {
	return &Registry{Store: store, providers: []Provider{totpProvider{store}}}
}

// Add makes another kind of second factor count. Call it before the
// registry is used.
func (r *Registry) Add(p Provider) { r.providers = append(r.providers, p) }

// Kinds returns the kinds of confirmed second factor the user has, in the
// order they were added (TOTP first); none: an empty list. Recovery codes
// are no kind of their own here: without another factor they count for
// nothing.
func (r *Registry) Kinds(ctx context.Context, userID int64) ([]string, error) {
	var kinds []string
	for _, p := range r.providers {
		list, err := p.List(ctx, userID)
		if err != nil {
			return nil, err
		}
		if len(list) > 0 {
			kinds = append(kinds, p.Kind())
		}
	}
	return kinds, nil
}

// List returns every second factor of the user, the recovery codes last
// (one entry with the count left), for the account page and the operator.
func (r *Registry) List(ctx context.Context, userID int64) ([]Enrolment, error) {
	var all []Enrolment
	for _, p := range r.providers {
		list, err := p.List(ctx, userID)
		if err != nil {
			return nil, err
		}
		all = append(all, list...)
	}
	left, made, err := r.recoveryLeft(ctx, userID)
	if err != nil {
		return nil, err
	}
	if left > 0 {
		all = append(all, Enrolment{Kind: KindRecovery, Created: made, Remaining: left})
	}
	return all, nil
}

// RemoveAll removes every second factor of the user, of every kind, and the
// recovery codes, and returns how many factors there were (the recovery
// codes count as one when there were any). It goes on past a failing kind,
// so that one store down leaves the others done, and returns the first
// error.
func (r *Registry) RemoveAll(ctx context.Context, userID int64) (int, error) {
	var first error
	n := 0
	for _, p := range r.providers {
		removed, err := p.RemoveAll(ctx, userID)
		n += removed
		if err != nil && first == nil {
			first = err
		}
	}
	dropped, err := r.DropRecoveryCodes(ctx, userID)
	if dropped > 0 {
		n++
	}
	return n, errors.Join(first, err)
}

// totpProvider is the built-in kind: the Store's TOTP.
type totpProvider struct{ s *Store }

func (totpProvider) Kind() string { return KindTOTP }

func (p totpProvider) List(ctx context.Context, userID int64) ([]Enrolment, error) {
	e, ok, err := p.s.totpEnrolment(ctx, userID)
	if err != nil || !ok {
		return nil, err
	}
	return []Enrolment{e}, nil
}

func (p totpProvider) RemoveAll(ctx context.Context, userID int64) (int, error) {
	removed, err := p.s.RemoveTOTP(ctx, userID)
	if removed {
		return 1, err
	}
	return 0, err
}
