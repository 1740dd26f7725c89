package pages

import (
	"slices"
	"testing"
	"time"

	"github.com/authgate/authgate/caddymodule/sessions"
)

func TestAgo(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		d    time.Duration
		want string
	}{
		{"now", 0, "just now"},
		{"seconds", 59 * time.Second, "just now"},
		{"a minute", time.Minute, "1 minute ago"},
		{"minutes", 59*time.Minute + 59*time.Second, "59 minutes ago"},
		{"an hour", time.Hour, "1 hour ago"},
		{"hours", 47 * time.Hour, "47 hours ago"},
		{"days", 49 * time.Hour, "2 days ago"},
		{"a clock behind", -time.Hour, "just now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ago(now, now.Add(-tc.d)); got != tc.want {
				t.Fatalf("ago(%s) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}

// The page lists this session first, then the newest, with what a person
// reads in place of what is missing.
func TestSessionRows(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) int64 { return now.Add(-d).Unix() }
	list := []sessions.Session{ // oldest first, as List gives them
		{ID: "a", Created: at(50 * time.Hour), Seen: at(3 * time.Hour), Device: "Firefox on Linux", IP: "192.0.2.1"},
		{ID: "b", Created: at(2 * time.Hour), Device: "Safari on iOS", IP: "2001:db8::1"},
		{ID: "c", Created: at(time.Minute)},
	}
	rows := sessionRows(list, "b", now)
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []string{"b", "c", "a"}) {
		t.Fatalf("order %v, want b c a", ids)
	}
	for _, tc := range []struct {
		name string
		got  sessionRow
		want sessionRow
	}{
		{"this session", rows[0], sessionRow{ID: "b", Device: "Safari on iOS", IP: "2001:db8::1", Current: true,
			Started: "2 Jan 2030, 01:04 UTC", StartedAt: "2030-01-02T01:04:05Z", LastSeen: "2 hours ago", LastSeenAt: "2030-01-02T01:04:05Z"}},
		{"nothing known", rows[1], sessionRow{ID: "c", Device: "Unknown device", IP: "unknown",
			Started: "2 Jan 2030, 03:03 UTC", StartedAt: "2030-01-02T03:03:05Z", LastSeen: "1 minute ago", LastSeenAt: "2030-01-02T03:03:05Z"}},
		{"seen later", rows[2], sessionRow{ID: "a", Device: "Firefox on Linux", IP: "192.0.2.1",
			Started: "31 Dec 2029, 01:04 UTC", StartedAt: "2029-12-31T01:04:05Z", LastSeen: "3 hours ago", LastSeenAt: "2030-01-02T00:04:05Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("row\n %+v\nwant\n %+v", tc.got, tc.want)
			}
		})
	}
}
