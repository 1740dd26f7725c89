-- Second factors (package factors).
--
-- An authenticator app (TOTP, RFC 6238), at most one per user. The secret
-- is sealed by the server (AES-256-GCM under the "totp" secret, the user id
-- as associated data, so that a row copied to another account does not
-- open). It counts only once confirmed: confirmed_at stays NULL until the
-- user has typed a first code. last_step is the newest 30-second time step
-- whose code was accepted: a code of that step or an earlier one never
-- works again.
CREATE TABLE totp (
	user_id      bigint      PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
	secret       bytea       NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now(),
	confirmed_at timestamptz,
	last_step    bigint      NOT NULL DEFAULT 0,
	used_at      timestamptz
);

-- Recovery codes: a keyed hash (HMAC-SHA256 under the "recovery" secret,
-- over the user id and the code) of each code not used yet. A code is
-- deleted as it is used; a new set replaces the old one whole.
CREATE TABLE recovery_codes (
	user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	hash       bytea       NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id, hash)
);
