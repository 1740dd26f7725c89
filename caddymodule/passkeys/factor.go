package passkeys

import (
	"context"

	"github.com/authgate/authgate/caddymodule/factors"
)

// Provider makes passkeys one kind of second factor of the registry
// (factors.Provider): a user with a usable passkey has one, so that a
// login with the password asks for it, mfa required counts it, and an
// operator's reset removes it with the others.
type Provider struct{ Store *Store }

// Kind names passkeys among the second factors: "webauthn", as audit
// events, metrics and sessions (amr) do.
func (Provider) Kind() string { return Factor }

// List returns the user's usable passkeys; a suspended one counts for
// nothing.
func (p Provider) List(ctx context.Context, userID int64) ([]factors.Enrolment, error) {
	all, err := p.Store.List(ctx, userID)
	if err != nil {
		return nil, err
	}
	var out []factors.Enrolment
	for _, k := range all {
		if k.Suspended.IsZero() {
			out = append(out, factors.Enrolment{Kind: Factor, Name: k.Name, Created: k.Created, LastUsed: k.LastUsed})
		}
	}
	return out, nil
}

// RemoveAll removes every passkey of the user.
func (p Provider) RemoveAll(ctx context.Context, userID int64) (int, error) {
	return p.Store.RemoveAll(ctx, userID)
}
