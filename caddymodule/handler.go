package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/authgate/authgate/caddymodule/auth"
	"github.com/authgate/authgate/caddymodule/gatepath"
	"github.com/authgate/authgate/caddymodule/pages"
	"github.com/authgate/authgate/caddymodule/passkeys"
	"github.com/authgate/authgate/caddymodule/password"
	"github.com/authgate/authgate/caddymodule/restapi"
	"github.com/authgate/authgate/caddymodule/sessions"
	"github.com/authgate/authgate/caddymodule/usersapi"
	"github.com/authgate/authgate/caddymodule/web"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// The identity headers the gate sets for the upstream. A client's own copies
// are always removed first, so the upstream can trust them.
const (
	HeaderUser   = "Remote-User"
	HeaderEmail  = "Remote-Email"
	HeaderUserID = "Remote-User-Id"
	// HeaderAuthMethods says how the session was authenticated: its AMR
	// values (RFC 8176) joined with commas, e.g. "pwd" or "pwd,otp" (see
	// auth.AMRText).
	HeaderAuthMethods = "Remote-Auth-Methods"
)

// IdentityHeaders are every header the gate vouches for. A client's header
// or trailer is removed when its name reads as one of these to some
// upstream: in any case, and with "_" for "-" (CGI, PHP, WSGI and FastCGI
// file Remote_User and Remote-User alike under HTTP_REMOTE_USER).
var IdentityHeaders = []string{HeaderUser, HeaderEmail, HeaderUserID, HeaderAuthMethods}

// DefaultPrefix is where the pages and the users API live by default.
const DefaultPrefix = "/auth"

// Handler is the "http.handlers.authgate" handler. It serves the account
// endpoints under Prefix (and AccountAPI), and lets any other request
// through only with a valid session, telling the upstream who the user is.
type Handler struct {
	// Path prefix of the login pages and the users API. Default: /auth.
	Prefix string `json:"prefix,omitempty"`
	// Path prefix of the REST account dialect; empty (default) turns it off.
	AccountAPI string `json:"account_api,omitempty"`
	// Path where the users dialect is served instead of under Prefix, for a
	// front-end written for it that calls its own API base: the endpoints
	// at <users_api>/users/<name>, and the login also at POST
	// <users_api>/login and <users_api>/login/. Everything else under the
	// path stays the app's: gated, and passed upstream. With it set the
	// gate also takes a session from that front-end's "Authorization: Basic
	// base64(userhash:ssid)". Default: empty, the dialect under Prefix.
	UsersAPI string `json:"users_api,omitempty"`
	// Path patterns that need no session, in the syntax of Caddy's path
	// matcher (/healthz, /assets/*, *.css) but matched case-sensitively, and
	// only against canonical paths, both as forwarded and decoded (see
	// gatepath).
	Public []string `json:"public,omitempty"`
	// Product name shown on the login pages. Default: authgate.
	Title string `json:"title,omitempty"`
	// The site's public origin, e.g. https://app.example.com: mailed links
	// that reset_url gives as a path start with it, never with a host taken
	// from the request. Filled from the site address by the Caddyfile
	// adapter. Required with account_api when reset_url is a path (as by
	// default).
	Origin string `json:"origin,omitempty"`

	app    *App
	public *gatepath.Patterns
	users  *usersapi.API
	pages  *pages.Pages
	rest   *restapi.API
	cookie web.Cookie
	device string // the device cookie's name
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.authgate",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision joins the handler to the authgate app, which every site shares.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	// Judge the paths as written, before they are normalised below.
	if err := h.Validate(); err != nil {
		return err
	}
	if h.Prefix == "" {
		h.Prefix = DefaultPrefix
	}
	h.Prefix = strings.TrimSuffix(h.Prefix, "/")
	h.AccountAPI = strings.TrimSuffix(h.AccountAPI, "/")
	h.Origin = strings.TrimSuffix(h.Origin, "/")
	appIface, err := ctx.App("authgate")
	if err != nil {
		return fmt.Errorf("authgate global options: %w", err)
	}
	h.app = appIface.(*App)
	if h.public, err = publicPatterns(h.Public); err != nil {
		return err
	}
	h.cookie = web.Cookie{Name: h.app.CookieName, Domain: h.app.CookieDomain}
	h.device = h.cookie.Device().Name
	h.users = &usersapi.API{Cookie: h.cookie, Logger: h.logger}
	if h.Title == "" {
		h.Title = "authgate"
	}
	rp, err := passkeys.NewRP(h.Origin, h.app.CookieDomain, h.Title)
	if err != nil {
		return err
	}
	if why := rp.Unavailable(); why != "" {
		h.logger.Info("passkeys are not available on this site", zap.String("origin", h.Origin), zap.String("reason", why))
	}
	h.pages = &pages.Pages{Cookie: h.cookie, Prefix: h.Prefix, Title: h.Title, Logger: h.logger, RP: rp}
	if err := h.needOrigin(h.app.ResetURL); err != nil {
		return err
	}
	h.rest = &restapi.API{Cookie: h.cookie, ResetURL: h.app.ResetURL, Origin: h.Origin, Prefix: h.Prefix, Logger: h.logger}
	return nil
}

// needOrigin refuses a site that would mail links to a relative reset_url
// with no configured origin to put before it: the only other host there is
// the request's, which whoever asks for the mail chooses.
func (h *Handler) needOrigin(resetURL string) error {
	if h.AccountAPI == "" || h.Origin != "" {
		return nil
	}
	if resetURL == "" {
		resetURL = DefaultResetURL
	}
	if isPath, err := resetURLIsPath(resetURL); err != nil || !isPath {
		return nil // an absolute reset_url needs no origin; a bad one is the app's error
	}
	return fmt.Errorf("authgate: reset_url: %q is a path, and this site has no host name to put before it "+
		"(mailed links never take the request's host): give the site a host name or an origin, "+
		"or make reset_url an absolute URL such as https://app.example.com/auth/reset?token={token}", resetURL)
}

// Validate checks the handler's paths.
func (h *Handler) Validate() error {
	prefix := h.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	for directive, p := range map[string]string{"prefix": prefix, "account_api": h.AccountAPI} {
		// Compared with the path as forwarded, so spelled as it is: no
		// escapes, and canonical like every path the gate serves itself.
		if p != "" && (!gatepath.Canonical(p) || strings.ContainsAny(p, "%*{}") || p == "/") {
			return fmt.Errorf("authgate: %s: %q must be a path like /auth", directive, p)
		}
	}
	if h.AccountAPI != "" && (under(h.AccountAPI, prefix) || under(prefix, h.AccountAPI)) {
		return fmt.Errorf("authgate: account_api: %q overlaps prefix %q", h.AccountAPI, prefix)
	}
	if h.UsersAPI != "" {
		if err := h.validateUsersAPI(prefix); err != nil {
			return err
		}
	}
	if h.Origin != "" {
		u, err := url.Parse(h.Origin)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(u.Host, "{}") {
			return fmt.Errorf("authgate: origin: %q must be a scheme and host, like https://app.example.com", h.Origin)
		}
	}
	_, err := publicPatterns(h.Public)
	return err
}

// validateUsersAPI checks users_api: a path of its own, whose served paths
// (<users_api>/users/… and the login at <users_api>/login and
// <users_api>/login/) meet neither prefix, nor account_api, nor a public
// pattern. It is checked as written, since the mount is matched exactly.
func (h *Handler) validateUsersAPI(prefix string) error {
	u := h.UsersAPI
	if !gatepath.Canonical(u) || strings.ContainsAny(u, "%*{}") || u == "/" || strings.HasSuffix(u, "/") {
		return fmt.Errorf("authgate: users_api: %q must be a path like /api, without a trailing slash", u)
	}
	users, login := u+"/users", u+"/login"
	for _, other := range []struct{ directive, path string }{
		{"prefix", strings.TrimSuffix(prefix, "/")},
		{"account_api", strings.TrimSuffix(h.AccountAPI, "/")},
	} {
		if other.path != "" && (under(users, other.path) || under(other.path, users) || under(login, other.path)) {
			return fmt.Errorf("authgate: users_api: %q serves %s/… and %s, which meet %s %q", u, users, login, other.directive, other.path)
		}
	}
	public, err := publicPatterns(h.Public)
	if err != nil {
		return err
	}
	samples := []string{users + "/", users + "/x", login, login + "/"}
	for _, name := range usersapi.Names() {
		samples = append(samples, users+"/"+name)
	}
	for _, p := range samples {
		if public.Match(p) {
			return fmt.Errorf("authgate: users_api: %q serves %s, which a public pattern opens to the app without a session", u, p)
		}
	}
	return nil
}

// publicPatterns compiles the public patterns, with {env.*} resolved.
func publicPatterns(list []string) (*gatepath.Patterns, error) {
	repl := caddy.NewReplacer()
	resolved := make([]string, len(list))
	for i, p := range list {
		resolved[i] = repl.ReplaceKnown(p, "")
	}
	p, err := gatepath.Compile(resolved)
	if err != nil {
		return nil, fmt.Errorf("authgate: public: %w", err)
	}
	return p, nil
}

// ServeHTTP routes a request to the account endpoints, or through the gate.
//
// Every decision is taken on r.URL.EscapedPath(), the path exactly as
// reverse_proxy will forward it, and only a canonical one (see gatepath) is
// served as an account endpoint or let through as public: any other
// spelling goes through the gate, so that no upstream can read a path
// differently from the gate without a session.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	stripIdentity(r.Header)
	guardTrailers(r)

	svc := h.app.service(r.Context())
	// r.URL.Path is raw decoded: a canonical raw path keeps its segments
	// when decoded, and the mounts have no escapes, so both agree on them.
	raw, path := r.URL.EscapedPath(), r.URL.Path
	// The gate answers its own endpoints itself, so only their structure
	// must be canonical for them to be ours (see gatepath.Structural).
	ours := gatepath.Structural(raw)
	switch {
	case ours && under(raw, h.Prefix):
		defer h.app.serving()()
		if svc == nil {
			return caddyhttp.Error(http.StatusServiceUnavailable, errNotStarted)
		}
		if name, ok := strings.CutPrefix(path, h.Prefix+"/users/"); ok && h.UsersAPI == "" {
			h.serveUsers(w, r, svc, name)
			return nil
		}
		if h.UsersAPI == "" && h.apiLogin(r, strings.TrimPrefix(path, h.Prefix)) {
			h.serveUsers(w, r, svc, "login")
			return nil
		}
		pg := *h.pages
		pg.Service, pg.Passkeys = svc, h.app.passkeys.Load()
		if !pg.Serve(w, r, strings.TrimPrefix(path, h.Prefix)) {
			usersapi.Fail(w, http.StatusNotFound, usersapi.NotFound)
		}
		return nil
	case ours && h.AccountAPI != "" && under(raw, h.AccountAPI):
		defer h.app.serving()()
		if svc == nil {
			return caddyhttp.Error(http.StatusServiceUnavailable, errNotStarted)
		}
		api := *h.rest
		api.Service = svc
		api.Serve(w, r, strings.TrimPrefix(path, h.AccountAPI))
		return nil
	}
	if name, ok := h.usersMount(raw, path); ok {
		if svc == nil {
			return caddyhttp.Error(http.StatusServiceUnavailable, errNotStarted)
		}
		h.serveUsers(w, r, svc, name)
		return nil
	}

	// While the gate serves, password hashing leaves it a P of its own.
	password.GateActive()
	if h.public.Match(raw) {
		h.takeToken(r)
		h.app.metrics.Gate("public")
		return next.ServeHTTP(w, r)
	}
	return h.gate(w, r, next, svc)
}

var errNotStarted = errors.New("authgate is starting")

func (h *Handler) serveUsers(w http.ResponseWriter, r *http.Request, svc *auth.Service, name string) {
	api := *h.users
	api.Service = svc
	api.Serve(w, r, name)
}

// usersMount reports whether the users_api mount serves the request, and
// the endpoint's name: <users_api>/users/<name>, and the login at
// <users_api>/login and <users_api>/login/ (whatever the method: those
// paths are the login's, not the app's). The mount sits in the app's own
// path space, so it answers a path only when every upstream reads it as one
// of those too: a canonical path (see gatepath.Canonical), not merely a
// structural one as under prefix (a fullwidth "．．" segment is ".." to an
// upstream that applies NFKC), and with a name (an upstream that drops a
// trailing slash reads <users_api>/users/ as <users_api>/users, which may
// be the app's). Anything else is gated and passed on as it is.
func (h *Handler) usersMount(raw, path string) (string, bool) {
	rest, ok := strings.CutPrefix(raw, h.UsersAPI)
	if h.UsersAPI == "" || !ok {
		return "", false
	}
	if rest == "/login" || rest == "/login/" {
		return "login", true
	}
	if len(rest) > len("/users/") && strings.HasPrefix(rest, "/users/") && gatepath.Canonical(raw) {
		// A canonical path keeps its segments decoded, and the mount has
		// no escapes: path starts the same.
		return strings.TrimPrefix(path, h.UsersAPI+"/users/"), true
	}
	return "", false
}

// apiLogin tells whether a request for the page path (after prefix) is the
// seed client's login rather than the login page's: POST {prefix}/login (or
// /login/) with a JSON body, or from a client that does not ask for HTML.
// A browser's form post gets the page, as it always has.
func (h *Handler) apiLogin(r *http.Request, page string) bool {
	return r.Method == http.MethodPost && (page == "/login" || page == "/login/") &&
		(!web.AcceptsHTML(r) || web.JSONBody(r))
}

// gate passes the request upstream only with a live session: one Redis
// round trip, no PostgreSQL.
func (h *Handler) gate(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, svc *auth.Service) error {
	if svc == nil {
		h.app.metrics.Gate("unavailable")
		return caddyhttp.Error(http.StatusServiceUnavailable, errNotStarted)
	}
	token := h.takeToken(r)
	if token == "" {
		return h.deny(w, r)
	}
	sess, err := svc.Authenticate(r.Context(), token)
	if errors.Is(err, sessions.ErrNotFound) {
		return h.deny(w, r)
	}
	if err != nil {
		// Fail closed: without Redis nobody passes. The service has
		// counted the store's error.
		h.app.metrics.Gate("unavailable")
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	if svc.MFA() == auth.MFARequired && !auth.HasSecondFactor(sess.AMR) {
		return h.enrol(w, r)
	}
	h.app.metrics.Gate("allowed")

	userID := strconv.FormatInt(sess.UserID, 10)
	amr := auth.AMRText(sess.AMR)
	hdr := r.Header
	hdr.Set(HeaderUser, sess.Username)
	hdr.Set(HeaderUserID, userID)
	if sess.Email != "" {
		hdr.Set(HeaderEmail, sess.Email)
	}
	hdr.Set(HeaderAuthMethods, amr)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.id", sess.Username)
	repl.Set("http.auth.user.user_id", userID)
	repl.Set("http.auth.user.email", sess.Email)
	repl.Set("http.auth.user.amr", amr)
	return next.ServeHTTP(w, r)
}

// enrol answers a session without the second factor that mfa required
// asks for, before anything of the upstream's: a browser that navigates
// goes to enrol one (and comes back after), anything else is refused with
// 403 MFA_ENROLMENT_REQUIRED. Such a session comes from the login page
// (which lets a user without a second factor in, to enrol) or from before
// mfa was required; the pages under the prefix serve it as they must.
func (h *Handler) enrol(w http.ResponseWriter, r *http.Request) error {
	h.app.metrics.Gate("enrolment")
	if navigates(r) {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, pages.EnrolPath(h.Prefix, r.URL.RequestURI()), http.StatusFound)
		return nil
	}
	usersapi.Fail(w, http.StatusForbidden, usersapi.MFAEnrolmentRequired)
	return nil
}

// navigates tells a browser's navigation (which a redirect serves) from an
// API call or an asset (which must get a status).
func navigates(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && web.AcceptsHTML(r)
}

// deny sends a browser that navigates to the login page, with the way back,
// and answers anything else (API calls, assets) 401 in the users API's form.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request) error {
	if navigates(r) {
		h.app.metrics.Gate("redirected")
		target := h.Prefix + "/login?redirect=" + url.QueryEscape(r.URL.RequestURI())
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target, http.StatusFound)
		return nil
	}
	h.app.metrics.Gate("denied")
	w.Header().Set("WWW-Authenticate", `Bearer realm="authgate"`)
	usersapi.Fail(w, http.StatusUnauthorized, usersapi.PleaseLogin)
	return nil
}

func under(path, prefix string) bool {
	return path == prefix || (strings.HasPrefix(path, prefix) && path[len(prefix)] == '/')
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
