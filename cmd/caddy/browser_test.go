package main

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/authgate/authgate/caddymodule/testenv"
)

// stepTimeout bounds every browser step, so that a page that never comes
// fails the test instead of hanging it; a slow, busy machine never needs
// that long.
const stepTimeout = testenv.Patience

// browser is one headless Chromium, with a fresh profile, driven by
// chromedp.
type browser struct {
	t   *testing.T
	ctx context.Context // the tab; has no deadline: it owns the browser
}

// chromiumPath finds Chromium, or fails: the browser tests are part of
// `make test` and never skip.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Fatal("Chromium is not installed: apt-get install -y chromium (or run make test, which installs it)")
	return ""
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		// Close Chromium gracefully, and wait for it, before t.TempDir
		// removes its profile.
		_ = chromedp.Cancel(ctx)
		cancel()
		cancelAlloc()
	})
	return startTab(t, ctx, "Chromium")
}

// otherDevice returns a second browser in b's Chromium with a browser
// context of its own (cookies, storage), as another device of the same
// person would be.
func (b *browser) otherDevice() *browser {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(func() { // before b's own: cleanups run last first
		_ = chromedp.Cancel(ctx)
		cancel()
	})
	return startTab(b.t, ctx, "a second browser context")
}

// startTab runs ctx's first action, which makes its tab (and, the first
// time, starts the browser), and sets the desktop viewport.
func startTab(t *testing.T, ctx context.Context, what string) *browser {
	t.Helper()
	// The first run binds the tab (and the browser) to ctx, so it must not
	// carry a deadline: bound it from the outside instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting %s: %v", what, err)
		}
	case <-time.After(testenv.Patience):
		t.Fatalf("%s did not start within %s", what, testenv.Patience)
	}
	b := &browser{t: t, ctx: ctx}
	b.do("setting the desktop viewport", desktop.emulate())
	return b
}

// run runs one action under stepTimeout and returns its value.
func run[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// do runs actions that return no value, under stepTimeout.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	run(b, what, chromedp.Steps(steps...))
}

// open navigates to u, waits for the page, and returns its HTTP status.
func (b *browser) open(u string) int64 {
	b.t.Helper()
	return run(b, "opening "+u, chromedp.NavigateResponse(u)).Status
}

// click clicks the element and waits for the page that it loads; it
// returns the page's HTTP status.
func (b *browser) click(sel string) int64 {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("clicking %s: %v", sel, err)
	}
	return resp.Status
}

// fill empties the field and types value into it, as a person would.
// (chromedp v0.23.0's SetValue cannot set "": the empty argument is dropped
// on the way to the browser, which then sets "undefined".)
func (b *browser) fill(sel, value string) {
	b.t.Helper()
	b.do("filling "+sel,
		chromedp.WaitVisible(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector(`+jsString(sel)+`).value = ""`),
		chromedp.SendKeys(chromedp.CSS(sel), value))
}

// value returns the value of a form field, hidden ones included.
func (b *browser) value(sel string) string {
	b.t.Helper()
	return run(b, "reading "+sel, chromedp.Value(chromedp.CSS(sel)))
}

// text returns the visible text of the element.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return run(b, "reading "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// pageText returns all the text the page shows.
func (b *browser) pageText() string {
	b.t.Helper()
	return run(b, "reading the page", chromedp.Evaluate[string](`document.body.innerText`))
}

// has reports whether the page has an element matching sel, right now.
func (b *browser) has(sel string) bool {
	b.t.Helper()
	return run(b, "looking for "+sel, chromedp.Evaluate[bool](`document.querySelector(`+jsString(sel)+`) !== null`))
}

// jsString quotes s as a JavaScript string: a JSON string is one.
func jsString(s string) string {
	lit, _ := json.Marshal(s)
	return string(lit)
}

// location returns the URL of the page.
func (b *browser) location() *url.URL {
	b.t.Helper()
	loc := run(b, "reading the location", chromedp.Location())
	u, err := url.Parse(loc)
	if err != nil {
		b.t.Fatalf("location %q: %v", loc, err)
	}
	return u
}

// cookie returns the browser's cookie of that name for the gate, or nil.
func (b *browser) cookie(base, name string) *network.Cookie {
	b.t.Helper()
	res := run(b, "reading cookies", func(ctx context.Context, t *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	})
	for _, c := range res.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// viewport is a screen size the screenshots are taken at.
type viewport struct {
	name          string
	width, height int64
	mobile        bool
}

var (
	phone   = viewport{"phone", 375, 812, true}
	desktop = viewport{"desktop", 1280, 800, false}
)

func (v viewport) emulate() chromedp.Action[chromedp.Void] {
	if v.mobile {
		return chromedp.EmulateViewport(v.width, v.height, chromedp.EmulateMobile, chromedp.EmulatePortrait, chromedp.EmulateTouch)
	}
	return chromedp.EmulateViewport(v.width, v.height)
}

// screenshotDir is where the screenshots go: $AUTHGATE_SCREENSHOTS, or
// authgate-screenshots in the temporary directory.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("AUTHGATE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "authgate-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shot saves a full-page PNG of the page at the phone and the desktop
// viewport, as <name>-phone.png and <name>-desktop.png, and leaves the
// desktop viewport on.
func (b *browser) shot(name string) {
	b.t.Helper()
	dir := screenshotDir(b.t)
	for _, v := range []viewport{phone, desktop} {
		b.do("setting the "+v.name+" viewport", v.emulate())
		png := run(b, "screenshot "+name, fullPage)
		path := filepath.Join(dir, name+"-"+v.name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.t.Logf("screenshots: %s", filepath.Join(dir, name+"-{phone,desktop}.png"))
}

// fullPage captures the whole page, below the fold too, as the screen
// shows it: a page without a mobile viewport is laid out wider than a phone
// and shrunk to fit, so the picture keeps the phone's width.
func fullPage(ctx context.Context, t *chromedp.Target) ([]byte, error) {
	m, err := cdp.Call(ctx, t, page.GetLayoutMetrics, cdp.Empty{})
	if err != nil {
		return nil, err
	}
	w, h := float64(m.CSSLayoutViewport.ClientWidth), float64(m.CSSLayoutViewport.ClientHeight)
	if c := m.CSSContentSize; c != nil && c.Height > h {
		h = c.Height
	}
	scale := 1.0
	if v := m.CSSVisualViewport; v != nil && v.Scale > 0 {
		scale = v.Scale
	}
	res, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{
		Format:                page.CaptureScreenshotFormatPng,
		Clip:                  &page.Viewport{Width: w, Height: h, Scale: scale},
		CaptureBeyondViewport: ptr(true),
		FromSurface:           ptr(true),
	})
	return res.Data, err
}

func ptr[T any](v T) *T { return &v }
