package caddymodule

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/authgate/authgate/caddymodule/accounts"
	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/factors"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "authgate",
		Usage: "<useradd|passwd|import|sessions|revoke|mfa|mfa-reset> [args] [--config <path> [--adapter <name>]]",
		Short: "Manages authgate accounts and sessions",
		Long: `
Manages the accounts and sessions of the authgate app configured in the given
config (default: the Caddyfile in the current directory), talking to its
PostgreSQL and Redis directly; Caddy need not be running.

  useradd <user> [--email <address>]  create an account (works when registration is closed)
  passwd <user>                       set a new password and end every session of the user
  import <file>                       create accounts from "user:hash" lines: htpasswd
                                      bcrypt hashes or argon2id PHC strings; they are
                                      re-hashed at the first login
  sessions <user>                     list the user's live sessions
  revoke <user>                       end every session of the user
  mfa <user>                          list the user's second factors: kinds, when enrolled
                                      and last used, recovery codes left (never a secret)
  mfa-reset <user>                    remove every second factor and recovery code of the
                                      user (a lost phone) and end every session of theirs

Passwords are read from the terminal, or one line of standard input.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.PersistentFlags().StringP("config", "c", "", "Configuration file")
			cmd.PersistentFlags().StringP("adapter", "a", "", "Name of config adapter to apply")
			add := &cobra.Command{Use: "useradd <user>", Short: "Create an account", Args: cobra.ExactArgs(1), RunE: runCLI(cliUseradd)}
			add.Flags().String("email", "", "Email address, for password recovery")
			cmd.AddCommand(add,
				&cobra.Command{Use: "passwd <user>", Short: "Set a new password", Args: cobra.ExactArgs(1), RunE: runCLI(cliPasswd)},
				&cobra.Command{Use: "import <file>", Short: "Import user:hash lines", Args: cobra.ExactArgs(1), RunE: runCLI(cliImport)},
				&cobra.Command{Use: "sessions <user>", Short: "List live sessions", Args: cobra.ExactArgs(1), RunE: runCLI(cliSessions)},
				&cobra.Command{Use: "revoke <user>", Short: "End every session", Args: cobra.ExactArgs(1), RunE: runCLI(cliRevoke)},
				&cobra.Command{Use: "mfa <user>", Short: "List second factors", Args: cobra.ExactArgs(1), RunE: runCLI(cliMFA)},
				&cobra.Command{Use: "mfa-reset <user>", Short: "Remove every second factor and end every session", Args: cobra.ExactArgs(1), RunE: runCLI(cliMFAReset)},
			)
		},
	})
}

type cliFunc func(ctx context.Context, cmd *cobra.Command, svc *auth.Service, arg string) error

// runCLI loads the config's authgate app, opens its stores and runs f.
func runCLI(f cliFunc) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		configFile, _ := cmd.Flags().GetString("config")
		adapter, _ := cmd.Flags().GetString("adapter")
		cfgJSON, _, _, err := caddycmd.LoadConfig(configFile, adapter)
		if err != nil {
			return err
		}
		var cfg struct {
			Apps map[string]json.RawMessage `json:"apps"`
		}
		if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
			return fmt.Errorf("reading config: %w", err)
		}
		raw, ok := cfg.Apps["authgate"]
		if !ok {
			return errors.New("the config has no authgate global option")
		}
		app := new(App)
		if err := json.Unmarshal(raw, app); err != nil {
			return fmt.Errorf("reading the authgate app: %w", err)
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
		defer cancel()
		svc, done, err := app.Standalone(ctx, caddy.Log().Named("authgate"))
		if err != nil {
			return err
		}
		defer done()
		cmd.SilenceUsage = true
		return f(ctx, cmd, svc, args[0])
	}
}

func cliUseradd(ctx context.Context, cmd *cobra.Command, svc *auth.Service, username string) error {
	email, _ := cmd.Flags().GetString("email")
	pw, err := readPassword(cmd, "Password for "+username+": ")
	if err != nil {
		return err
	}
	u, err := svc.CreateUser(ctx, username, pw, email, "cli")
	if err != nil {
		return explainCLI(err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "created %s (user_id %d)\n", u.Username, u.ID)
	return nil
}

func cliPasswd(ctx context.Context, cmd *cobra.Command, svc *auth.Service, username string) error {
	u, err := svc.UserByName(ctx, username)
	if err != nil {
		return explainCLI(err)
	}
	pw, err := readPassword(cmd, "New password for "+u.Username+": ")
	if err != nil {
		return err
	}
	if err := svc.ChangePassword(ctx, u, pw, "", "cli"); err != nil {
		return explainCLI(err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "password of %s changed; every session ended\n", u.Username)
	return nil
}

func cliImport(ctx context.Context, cmd *cobra.Command, svc *auth.Service, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	out := cmd.OutOrStdout()
	var imported, skipped int
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		username, hash, ok := strings.Cut(text, ":")
		if !ok {
			fmt.Fprintf(out, "line %d: skipped: not user:hash\n", line)
			skipped++
			continue
		}
		if _, err := svc.ImportUser(ctx, username, hash, ""); err != nil {
			// Never print the hash: it is a secret too.
			fmt.Fprintf(out, "line %d: %s skipped: %v\n", line, username, explainCLI(err))
			skipped++
			continue
		}
		imported++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	fmt.Fprintf(out, "imported %d, skipped %d\n", imported, skipped)
	return nil
}

func cliSessions(ctx context.Context, cmd *cobra.Command, svc *auth.Service, username string) error {
	u, err := svc.UserByName(ctx, username)
	if err != nil {
		return explainCLI(err)
	}
	list, err := svc.ListSessions(ctx, u)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "%d live session(s) of %s\n", len(list), u.Username)
	for _, s := range list {
		fmt.Fprintf(out, "%s  started %s  ends %s\n", s.ID[:12],
			time.Unix(s.Created, 0).UTC().Format(time.RFC3339), time.Unix(s.Expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

func cliRevoke(ctx context.Context, cmd *cobra.Command, svc *auth.Service, username string) error {
	u, err := svc.UserByName(ctx, username)
	if err != nil {
		return explainCLI(err)
	}
	n, err := svc.RevokeSessions(ctx, u, "cli")
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "ended %d session(s) of %s\n", n, u.Username)
	return nil
}

func cliMFA(ctx context.Context, cmd *cobra.Command, svc *auth.Service, username string) error {
	u, err := svc.UserByName(ctx, username)
	if err != nil {
		return explainCLI(err)
	}
	list, err := svc.SecondFactors(ctx, u)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if len(list) == 0 {
		fmt.Fprintf(out, "%s has no second factor (mfa %s)\n", u.Username, svc.MFA())
		return nil
	}
	fmt.Fprintf(out, "second factors of %s (mfa %s):\n", u.Username, svc.MFA())
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	for _, f := range list {
		line := fmt.Sprintf("  %-9s", f.Kind)
		if f.Name != "" {
			line += fmt.Sprintf(" %q", f.Name)
		}
		if f.Kind == factors.KindRecovery {
			line += fmt.Sprintf(" %d code(s) left, made %s", f.Remaining, stamp(f.Created))
		} else {
			line += " enrolled " + stamp(f.Created)
			if !f.LastUsed.IsZero() {
				line += ", last used " + stamp(f.LastUsed)
			}
		}
		fmt.Fprintln(out, line)
	}
	return nil
}

func cliMFAReset(ctx context.Context, cmd *cobra.Command, svc *auth.Service, username string) error {
	u, err := svc.UserByName(ctx, username)
	if err != nil {
		return explainCLI(err)
	}
	n, ended, err := svc.ResetSecondFactors(ctx, u, "cli")
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "removed %d second factor(s) of %s; ended %d session(s)\n", n, u.Username, ended)
	return nil
}

// readPassword reads a password from the terminal without echo, or one line
// of standard input when it is not a terminal (for scripts).
func readPassword(cmd *cobra.Command, prompt string) (string, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		return string(b), err
	}
	line, err := bufio.NewReader(io.LimitReader(in, 8<<10)).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", errors.New("no password on standard input")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func explainCLI(err error) error {
	switch {
	case errors.Is(err, accounts.ErrNotFound), errors.Is(err, auth.ErrUnknownUser):
		return errors.New("no such user")
	case errors.Is(err, auth.ErrExists):
		return errors.New("the user exists already")
	case errors.Is(err, auth.ErrTooWeak):
		return errors.New("password too weak: 8 to 1024 characters, not the username and not a common password")
	case errors.Is(err, auth.ErrInvalidInput):
		return errors.New("invalid username, email or hash")
	}
	return err
}
