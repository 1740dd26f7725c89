package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"syscall"
)

// registerAndLogin registers the bench user and logs in, as a client of
// the users API would, and returns the session cookie.
func registerAndLogin(ctx context.Context, site string) (*http.Cookie, error) {
	if err := register(ctx, site, benchUser, "bench@example.com"); err != nil {
		return nil, err
	}
	return login(ctx, site)
}

// register registers username with benchPassword.
func register(ctx context.Context, site, username, email string) error {
	body, _ := json.Marshal(map[string]string{"username": username, "password": benchPassword, "email": email})
	resp, err := post(ctx, site+"auth/users/register", body)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("register %s: status %d", username, resp.StatusCode)
	}
	return nil
}

// login logs the bench user in and returns the session cookie it set.
func login(ctx context.Context, site string) (*http.Cookie, error) {
	return loginAs(ctx, site, benchUser)
}

// loginAs logs username in with benchPassword and returns the session
// cookie it set.
func loginAs(ctx context.Context, site, username string) (*http.Cookie, error) {
	body, _ := json.Marshal(map[string]string{"username": username, "password": benchPassword})
	resp, err := post(ctx, site+"auth/users/login", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var answer struct {
		Success any `json:"success"` // "true", a string, as the seed's server answered
		Data    struct {
			Message struct {
				SSID string `json:"ssid"`
			} `json:"message"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || answer.Success != "true" || answer.Data.Message.SSID == "" {
		return nil, fmt.Errorf("login: status %d, %v", resp.StatusCode, err)
	}
	for _, c := range resp.Cookies() {
		if c.Value == answer.Data.Message.SSID {
			return &http.Cookie{Name: c.Name, Value: c.Value}, nil
		}
	}
	return nil, errors.New("login: no cookie holds the ssid")
}

// post sends body as JSON, on a connection of its own: a POST is not
// retried on a kept-alive connection that the server closed meanwhile
// (minutes may pass between two), and every timed login then pays the same.
func post(ctx context.Context, u string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return postClient.Do(req)
}

// status returns the status of a GET with the given headers.
func status(ctx context.Context, u string, headers map[string]string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

var postClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// expect is a request a variant must answer as said before it is measured:
// with its credential 200, without it anything else, or the bench would
// measure error pages.
type expect struct {
	name    string
	url     string
	headers map[string]string
	want    int // 0: anything but 200
}

// expectStatuses checks each expectation with one GET.
func expectStatuses(ctx context.Context, es ...expect) error {
	for _, e := range es {
		got, err := status(ctx, e.url, e.headers)
		if err != nil || !(got == e.want || e.want == 0 && got != http.StatusOK) {
			return fmt.Errorf("%s: status %d (%v), want %d (0: not 200)", e.name, got, err, e.want)
		}
	}
	return nil
}

// answer is what a request got back: the status, the body, and in the
// users API's envelope, data.message as a code or as an object.
type answer struct {
	status  int
	header  http.Header
	body    string
	success any            // true, "true" (a login) or false
	code    string         // data.message when it is a string
	object  map[string]any // data.message when it is an object
}

// str returns a string field of data.message.
func (a answer) str(key string) string {
	s, _ := a.object[key].(string)
	return s
}

// cookie returns the value of the cookie the answer set, "" for none.
func (a answer) cookie(name string) string {
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// String describes the answer in a report line: the status, and the code
// or the start of the body.
func (a answer) String() string {
	if a.code != "" {
		return fmt.Sprintf("%d %s", a.status, a.code)
	}
	b := a.body
	if len(b) > 80 {
		b = b[:80] + "…"
	}
	return fmt.Sprintf("%d %q", a.status, b)
}

// unansweredError is a request that no server read: its connection was
// reset or closed before any byte of an answer came. A config reload does
// this to the connections the kernel queued for the old listener as it
// closes, and to idle keep-alive connections the old server closes as the
// client sends on them; HTTP lets a client send such a request again (RFC
// 9112, 9.3.1). caddymodule's fault tests treat them alike.
type unansweredError struct{ err error }

func (e *unansweredError) Error() string { return "no answer: " + e.err.Error() }
func (e *unansweredError) Unwrap() error { return e.err }

// call sends a request, with body (when not nil) as JSON, or as it is
// when it is []byte, and the given headers, and reads the answer whole.
func call(ctx context.Context, c *http.Client, method, u string, body any, header http.Header) (answer, error) {
	var rd io.Reader
	raw, isRaw := body.([]byte)
	switch {
	case isRaw:
		rd = bytes.NewReader(raw)
	case body != nil:
		b, err := json.Marshal(body)
		if err != nil {
			return answer{}, err
		}
		rd = bytes.NewReader(b)
	}
	var answered atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotFirstResponseByte: func() { answered.Store(true) }})
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return answer{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil && !isRaw {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		if !answered.Load() && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			return answer{}, &unansweredError{err}
		}
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	var env struct {
		Success any `json:"success"`
		Data    struct {
			Message json.RawMessage `json:"message"`
		} `json:"data"`
	}
	if json.Unmarshal(b, &env) == nil {
		a.success = env.Success
		if json.Unmarshal(env.Data.Message, &a.code) != nil {
			_ = json.Unmarshal(env.Data.Message, &a.object)
		}
	}
	return a, nil
}
