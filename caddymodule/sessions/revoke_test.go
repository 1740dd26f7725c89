package sessions

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/store"
	"github.com/authgate/authgate/caddymodule/testenv"
)

// A script answer of the wrong shape is an error that says so: not a nil
// error wrapped ("%!w(<nil>)"), nor a store outage, nor a count.
func TestRevokeUserOddReply(t *testing.T) {
	testenv.EachTopology(t, testRevokeUserOddReply)
}

func testRevokeUserOddReply(t *testing.T, tp testenv.Topology) {
	for _, tc := range []struct {
		name  string
		reply any
	}{
		{"a list", []any{int64(2), int64(1)}},
		{"an empty list", []any{}},
		{"a string", "two"},
		{"a negative count", int64(-1)},
		{"nil", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, rdb := newStore(t, tp, Config{TTL: time.Hour, MaxPerUser: 10})
			for range 2 {
				if _, _, err := s.Create(t.Context(), Session{UserID: 1, Userhash: alice, Username: "alice"}); err != nil {
					t.Fatal(err)
				}
			}
			testenv.ScriptReplies(rdb, tc.reply)
			n, err := s.RevokeUser(t.Context(), alice, "")
			if err == nil || n != 0 {
				t.Fatalf("RevokeUser = %d, %v; want an error", n, err)
			}
			if msg := err.Error(); strings.Contains(msg, "%!") || !strings.HasPrefix(msg, "ending sessions: ") {
				t.Fatalf("error %q", msg)
			}
			if errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("error %v counts as an outage", err)
			}
			// Redis ran the script all the same: the sessions ended.
			if keys := keys(t, s, rdb, ":*"); len(keys) != 0 {
				t.Fatalf("keys left: %v", keys)
			}
		})
	}
}
