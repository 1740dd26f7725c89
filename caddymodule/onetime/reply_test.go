package onetime

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/store"
	"github.com/authgate/authgate/caddymodule/testenv"
)

// A guess script answer of the wrong shape is an error that says so, not a
// nil error wrapped ("%!w(<nil>)"), nor a wrong code, nor a store outage.
func TestCheckOTPOddReply(t *testing.T) {
	testenv.EachTopology(t, testCheckOTPOddReply)
}

func testCheckOTPOddReply(t *testing.T, tp testenv.Topology) {
	const userhash = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name  string
		reply any
	}{
		{"one value", []any{"reqid"}},
		{"three values", []any{"reqid", "mac", "x"}},
		{"none", []any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := testenv.RedisClient(t, tp)
			prefix := testenv.Prefix(t)
			s := New(rdb, prefix, []byte("0123456789abcdef0123456789abcdef"), 10*time.Minute)
			reqid, code, err := s.IssueOTP(t.Context(), userhash)
			if err != nil {
				t.Fatal(err)
			}
			testenv.ScriptReplies(rdb, tc.reply)
			err = s.CheckOTP(t.Context(), userhash, reqid, code)
			if err == nil || errors.Is(err, ErrInvalid) || errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("CheckOTP = %v, want an error of its own", err)
			}
			if msg := err.Error(); strings.Contains(msg, "%!") || !strings.HasPrefix(msg, "checking OTP: ") {
				t.Fatalf("error %q", msg)
			}
			// Redis ran the script: the guess was spent, the code kept.
			if tries := rdb.HGet(t.Context(), s.otpKey(userhash), "tries").Val(); tries != "1" {
				t.Fatalf("tries = %q, want 1", tries)
			}
		})
	}
}
