// Package demo is a tiny upstream app to put behind authgate: it shows who
// authgate says the visitor is.
package demo

import (
	"encoding/json"
	"html/template"
	"net/http"
)

// Handler serves an HTML page at every path, and the same facts as JSON at
// /api/whoami.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/whoami", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(whoami(r))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		page.Execute(w, whoami(r))
	})
	return mux
}

// identity is what the upstream learns from authgate, and where it is.
type identity struct {
	User   string `json:"remote_user"`
	Email  string `json:"remote_email"`
	UserID string `json:"remote_user_id"`
	// Methods says how the login was made: "pwd", "pwd,otp", …
	Methods string `json:"remote_auth_methods"`
	Path    string `json:"path"`
	Query   string `json:"query"`
}

func whoami(r *http.Request) identity {
	return identity{
		User:    r.Header.Get("Remote-User"),
		Email:   r.Header.Get("Remote-Email"),
		UserID:  r.Header.Get("Remote-User-Id"),
		Methods: r.Header.Get("Remote-Auth-Methods"),
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
	}
}

// page is escaped by html/template: the headers come from the proxy, but
// the path and query come from anyone.
var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>authgate demo</title></head>
<body>
<h1>Hello, {{or .User "stranger"}}</h1>
<table>
<tr><th>Remote-User</th><td>{{.User}}</td></tr>
<tr><th>Remote-Email</th><td>{{.Email}}</td></tr>
<tr><th>Remote-User-Id</th><td>{{.UserID}}</td></tr>
<tr><th>Remote-Auth-Methods</th><td>{{.Methods}}</td></tr>
<tr><th>Path</th><td>{{.Path}}</td></tr>
<tr><th>Query</th><td>{{.Query}}</td></tr>
</table>
<p><a href="/api/whoami">/api/whoami</a> · <a href="/auth/account">Your account</a> · <a href="/auth/logout">Log out</a></p>
</body>
</html>
`))
