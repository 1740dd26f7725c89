-- Passkeys (WebAuthn credentials), several per account. What the
-- authenticator proves with at every sign-in is the public key; the
-- credential id is how it names itself, unique across all accounts, so that
-- a discoverable sign-in, which sends no username, finds its account.
CREATE TABLE passkeys (
	id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	user_id       bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	credential_id bytea       NOT NULL UNIQUE,
	-- The COSE key as the authenticator gave it.
	public_key    bytea       NOT NULL,
	-- The authenticator's signature counter as last seen (0: it keeps none).
	sign_count    bigint      NOT NULL DEFAULT 0,
	transports    text[]      NOT NULL DEFAULT '{}',
	aaguid        bytea,
	-- WebAuthn's credential flags (user verified, backup eligible, backed
	-- up), kept because a sign-in must not change backup eligibility.
	flags         smallint    NOT NULL DEFAULT 0,
	attestation_format text   NOT NULL DEFAULT '',
	name          text        NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now(),
	last_used_at  timestamptz,
	-- Set when a sign-in showed a signature counter that went backwards,
	-- the mark of a copied authenticator: the passkey is refused from then
	-- on, until its owner removes it.
	suspended_at  timestamptz
);
CREATE INDEX passkeys_user_id ON passkeys (user_id, created_at);
