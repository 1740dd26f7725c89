// Package useragent turns a User-Agent header into the few words a person
// recognises their device by ("Firefox on Linux"), for the account page's
// list of sessions.
//
// The summary is shown to the account's owner and kept in every session
// record, so it is short, bounded and plain ASCII whatever the client sent:
// a User-Agent is attacker-chosen text, and a name on the account page must
// not be able to pretend to be another device by sheer length or by
// characters that render as something else.
package useragent

import "strings"

// MaxLen bounds a summary, in bytes.
const MaxLen = 40

// browsers are matched in order: Edge and Opera also say "Chrome", Chrome
// also says "Safari".
var browsers = []struct{ token, name string }{
	{"Edg/", "Edge"},
	{"OPR/", "Opera"},
	{"Firefox/", "Firefox"},
	{"Chromium/", "Chromium"},
	{"Chrome/", "Chrome"},
	{"Safari/", "Safari"},
	{"curl/", "curl"},
	{"Wget/", "Wget"},
}

var systems = []struct{ token, name string }{
	{"Android", "Android"},
	{"iPhone", "iOS"},
	{"iPad", "iPadOS"},
	{"CrOS", "ChromeOS"},
	{"Mac OS X", "macOS"},
	{"Windows", "Windows"},
	{"Linux", "Linux"},
}

// Summary names the browser and system of a User-Agent, "Unknown device"
// when it says nothing recognisable.
func Summary(ua string) string {
	if len(ua) > 1024 { // real ones are a few hundred bytes
		ua = ua[:1024]
	}
	browser := ""
	for _, b := range browsers {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	if browser == "" {
		// A program that names itself first: "Go-http-client/1.1".
		if name, _, ok := strings.Cut(ua, "/"); ok {
			browser = plain(name)
		}
	}
	system := ""
	for _, s := range systems {
		if strings.Contains(ua, s.token) {
			system = s.name
			break
		}
	}
	switch {
	case browser != "" && system != "":
		return browser + " on " + system
	case browser != "":
		return browser
	case system != "":
		return "Browser on " + system
	}
	return "Unknown device"
}

// plain keeps letters, digits and a little punctuation, and bounds the
// length: nothing a page could render as another device's name.
func plain(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < MaxLen; i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		}
	}
	return b.String()
}
