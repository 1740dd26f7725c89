-- Usernames are compared in one canonical form (the username package:
-- PRECIS UsernameCaseMapped and more), which SQL cannot compute: Migrate
-- fills it in for the existing rows right after the SQL migrations, in the
-- same transaction. A row it leaves NULL kept its exact name because an
-- older row holds its canonical form, or has a name that is now refused.
ALTER TABLE users ADD COLUMN canonical text;
CREATE UNIQUE INDEX users_canonical_key ON users (canonical);

-- lower() knew nothing of width, composition or scripts: canonical replaces
-- it. Exact names stay unique, so that Remote-User names one account.
DROP INDEX users_username_key;
CREATE UNIQUE INDEX users_username_exact_key ON users (username);
