-- Accounts. The id is what the REST dialect calls user_id; userhash is the
-- users dialect's opaque handle and the Redis hash tag of the user's keys.
CREATE TABLE users (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	userhash      text        NOT NULL UNIQUE,
	username      text        NOT NULL,
	email         text,
	-- A PHC string: argon2id from this product, or bcrypt/argon2id imported.
	password_hash text        NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now(),
	updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Usernames are unique whatever their case, so "Alice" cannot shadow "alice".
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

-- Server secrets shared by every instance (keyed hashes of OTPs and
-- throttling keys), made once by the first instance that migrates.
CREATE TABLE secrets (
	name  text  PRIMARY KEY,
	value bytea NOT NULL
);
