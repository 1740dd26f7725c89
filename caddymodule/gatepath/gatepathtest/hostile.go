package gatepathtest

import (
	"net/url"
	"strings"
)

// Forwarded is the URL a Go server such as Caddy makes of a request-target;
// reverse_proxy forwards its RequestURI(), the escaped path and the query,
// which is the target itself unless Go had to escape bytes of it (a raw \,
// #, or non-ASCII byte). ok is false for a target Go refuses with 400.
func Forwarded(target string) (u *url.URL, ok bool) {
	if strings.ContainsAny(target, " ") { // splits the request line
		return nil, false
	}
	u, err := url.ParseRequestURI(target)
	return u, err == nil
}

// Case is a request-target and whether the gate, with PublicPatterns, must
// let it through without a session.
type Case struct {
	Target string
	Public bool
}

// Hostile are request-targets, as raw bytes on the request line, that try
// to reach /secret/ (or the catch-all) through a public pattern, or to
// reach a public route in a spelling a matcher reads differently. The few
// public ones keep the list honest: plain public paths still pass.
var Hostile = []Case{
	// Plain: public, and the control group.
	{"/healthz", true},
	{"/assets/app.css", true},
	{"/assets/js/app.js", true},
	{"/assets/%41pp.css", true}, // an escaped letter means the same everywhere
	{"/assets/caf%C3%A9.png", true},
	{"/healthz?/../secret/data", true}, // the query is no part of the path
	{"/secret/data", false},
	{"/", false},

	// Dot segments, raw and escaped.
	{"/secret/../healthz", false},
	{"/assets/../secret/data", false},
	{"/assets/./../secret/data", false},
	{"/assets/%2e%2e/secret/data", false},
	{"/assets/%2E%2E/secret/data", false},
	{"/assets/.%2e/secret/data", false},
	{"/assets/%2e./secret/data", false},
	{"/assets/.../secret/data", false},
	{"/assets/..%20/secret/data", false},
	{"/assets/.", false},

	// Escaped slash.
	{"/secret/..%2fhealthz", false},
	{"/secret/..%2Fhealthz", false},
	{"/assets/..%2fsecret/data", false},
	{"/assets%2f..%2fsecret/data", false},
	{"/assets/%2e%2e%2fsecret/data", false},
	{"/assets/..%2f..%2fsecret/data", false},

	// Backslash, raw (Go forwards it as %5C) and escaped.
	{`/assets/..\secret/data`, false},
	{`/assets\..\secret\data`, false},
	{"/assets/..%5csecret/data", false},
	{"/assets/..%5Csecret/data", false},

	// Semicolon parameters (Tomcat, Jetty).
	{"/assets/..;/secret/data", false},
	{"/assets/..%3b/secret/data", false},
	{"/healthz;/../secret/data", false},
	{"/healthz;x=1", false},

	// Double encoding.
	{"/assets/..%252fsecret/data", false},
	{"/assets/%252e%252e/secret/data", false},
	{"/assets/..%255csecret/data", false},
	{"/health%257a", false},
	{"/assets/%25", false},

	// Empty segments.
	{"//healthz", false},
	{"/assets//../secret/data", false},
	{"//secret/data", false},

	// Case (Caddy's matcher lowercases; ServeMux does not).
	{"/HEALTHZ", false},
	{"/Healthz", false},
	{"/ASSETS/app.css", false},
	{"/%48ealthz", false},
	{"/health%7a", false},

	// Fullwidth and best-fit look-alikes, raw (forwarded escaped) and
	// escaped.
	{"/assets/．．/secret/data", false},
	{"/assets/%ef%bc%8e%ef%bc%8e/secret/data", false},
	{"/assets/..%ef%bc%8fsecret/data", false},
	{"/assets/..%EF%BC%BCsecret/data", false},
	{"/%EF%BD%88ealthz", false},
	{"/assets/..%C2%A5secret/data", false},
	{"/assets/..%E2%88%95secret/data", false},

	// Overlong and invalid UTF-8.
	{"/assets/%c0%ae%c0%ae/secret/data", false},
	{"/assets/..%c0%afsecret/data", false},
	{"/assets/%e0%80%ae%e0%80%ae/secret/data", false},
	{"/assets/%ff", false},
	{"/assets/%C2%85", false}, // a C1 control

	// Control bytes and NUL.
	{"/healthz%00", false},
	{"/healthz%00/../secret/data", false},
	{"/assets/..%00/secret/data", false},
	{"/healthz%09", false},
	{"/healthz%0d%0a", false},

	// Trailing dots, spaces and slashes (Windows trims the first two).
	{"/healthz.", false},
	{"/healthz%20", false},
	{"/healthz/", false},
	{"/secret./data", false},

	// Escaped ? and #, raw # (forwarded as %23), IIS's %u, bad escapes.
	{"/healthz%3f/../secret/data", false},
	{"/healthz%23/../secret/data", false},
	{"/healthz#/../secret/data", false},
	{"/assets/..%u2216secret/data", false},
	{"/assets/..%u002fsecret/data", false},
	{"/healthz%", false},
	{"/healthz%zz", false},
}

// UsersMount is the users_api of the gate in the hostile-path tests: the
// users dialect at /api/users/<name>, its login at /api/login and
// /api/login/, and the rest of /api the app's.
const UsersMount = "/api"

// MountCase is a request-target under UsersMount, and whether the gate
// answers it itself, as the users dialect; otherwise it is gated and passed
// on to the app like any other path.
type MountCase struct {
	Target string
	Ours   bool
}

// UsersMountCases are spellings of the mount's paths that some upstream
// reads differently, and the plain ones. The gate may answer a path itself
// only when every upstream reads it inside the mount (InUsersMount of each
// of Readings), and must not let any of them reach the app without a
// session.
var UsersMountCases = []MountCase{
	{"/api/users/settings/registrationstatus", true},
	{"/api/users/login", true},
	{"/api/users/%6Cogin", true}, // an escaped letter
	{"/api/users/nothing", true},
	{"/api/users/login?next=/../secret", true},
	{"/api/login", true},
	{"/api/login/", true},
	{"/api/login?x=/../secret", true},

	{"/api/things", false},
	{"/api/users", false},
	{"/api/users/", false}, // /api/users to an upstream that drops the slash
	{"/api/users/../secret", false},
	{"/api/users/./login", false},
	{"/api/users/..%2fsecret", false},
	{"/api/users/%2e%2e/secret", false},
	{"/api/users/login;x=1", false},
	{"/api/users/..;/secret", false},
	{"/api/users/%EF%BC%8E%EF%BC%8E/secret", false}, // fullwidth dots
	{"/api/users/%C0%AE%C0%AE/secret", false},       // overlong dots
	{"/api/users/%00", false},
	{`/api/users\..\secret`, false},
	{"/api/users%2flogin", false},
	{"/api//users/login", false},
	{"/api/%75sers/login", false},
	{"/API/users/login", false},
	{"/api/login/..", false},
	{"/api/login/.", false},
	{"/api/login/x", false},
	{"/api/login//", false},
	{"/api/%6cogin", false},
	{"/api/Login", false},
	{"/api/login%2f", false},
	{"/api/login;", false},
	{"/api/login%00", false},
	{"/api/login%20", false},
	{"/api/login.", false},
}

// Readings are the paths upstreams read in a request-target: as sent (an
// upstream that does not decode), as Go decodes it, and as the lenient
// server reads it.
func Readings(target string) []string {
	u, ok := Forwarded(target)
	if !ok {
		return nil
	}
	return []string{u.EscapedPath(), u.Path, LenientPath(target)}
}

// InUsersMount tells whether an upstream that reads the path p leaves it to
// the users dialect at UsersMount: /api/users/<name>, /api/login or
// /api/login/.
func InUsersMount(p string) bool {
	name, ok := strings.CutPrefix(p, UsersMount+"/users/")
	return ok && name != "" || p == UsersMount+"/login" || p == UsersMount+"/login/"
}
