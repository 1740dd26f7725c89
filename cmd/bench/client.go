package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
