package caddymodule

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// cli runs `caddy authgate <args>` against the env's stores.
func (e *env) cli(stdin string, args ...string) (string, error) {
	e.t.Helper()
	file := filepath.Join(e.t.TempDir(), "Caddyfile")
	text := "{\n\tauthgate {\n\t\tpostgres " + e.pg + "\n\t\tredis " + e.redisURL + "\n\t\tredis_prefix " + e.prefix + "\n\t}\n}\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
	root := &cobra.Command{Use: "authgate"}
	caddycmd.Commands()["authgate"].CobraFunc(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append(args, "--config", file, "--adapter", "caddyfile"))
	err := root.Execute()
	return out.String(), err
}

func TestCLI(t *testing.T) {
	e := newEnv(t, options{global: "registration closed"})

	out, err := e.cli("cli-password\n", "useradd", "bella", "--email", "bella@example.com")
	if err != nil || !strings.Contains(out, "created bella") {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	c := e.client()
	e.login(c, "bella", "cli-password")
	e.login(e.client(), "bella", "cli-password")

	out, err = e.cli("", "sessions", "bella")
	if err != nil || !strings.Contains(out, "2 live session(s) of bella") {
		t.Fatalf("sessions: %v\n%s", err, out)
	}
	out, err = e.cli("", "revoke", "bella")
	if err != nil || !strings.Contains(out, "ended 2 session(s)") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	e.expect(e.do(c, "GET", "/auth/users/info", nil), 401, false, "PLEASE_LOGIN")

	out, err = e.cli("bella-new-password\n", "passwd", "bella")
	if err != nil || !strings.Contains(out, "password of bella changed") {
		t.Fatalf("passwd: %v\n%s", err, out)
	}
	e.login(e.client(), "bella", "bella-new-password")
	if _, err := e.cli("short\n", "passwd", "bella"); err == nil || !strings.Contains(err.Error(), "too weak") {
		t.Fatalf("weak password accepted: %v", err)
	}
	if _, err := e.cli("", "revoke", "nobody"); err == nil || !strings.Contains(err.Error(), "no such user") {
		t.Fatalf("revoke nobody: %v", err)
	}

	// Import htpasswd bcrypt lines and argon2id PHC lines; both log in and
	// are re-hashed with the current parameters.
	bc, _ := bcrypt.GenerateFromPassword([]byte("imported-bcrypt"), bcrypt.MinCost)
	argonHash := importedArgon2("imported-argon2")
	lines := "# users from the old system\ncarl:" + string(bc) + "\ndora:" + argonHash + "\nbroken line\neve:not-a-hash\nbella:" + string(bc) + "\n"
	file := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = e.cli("", "import", file)
	if err != nil || !strings.Contains(out, "imported 2, skipped 3") || strings.Contains(out, string(bc)) {
		t.Fatalf("import: %v\n%s", err, out)
	}
	e.login(e.client(), "carl", "imported-bcrypt")
	e.login(e.client(), "dora", "imported-argon2")
	for _, name := range []string{"carl", "dora"} {
		hash, _ := e.scalar("SELECT password_hash FROM authgate.users WHERE username = $1", name).(string)
		if !strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$") || hash == argonHash {
			t.Errorf("%s not re-hashed: %s", name, hash)
		}
	}
}

// importedArgon2 makes an argon2id PHC string as another system would, with
// other parameters than ours.
func importedArgon2(password string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(password), salt, 3, 19456, 1, 32)
	return "$argon2id$v=19$m=19456,t=3,p=1$" + base64.RawStdEncoding.EncodeToString(salt) + "$" +
		base64.RawStdEncoding.EncodeToString(key)
}
