package mail

import (
	"bytes"
	"context"
	"fmt"
	netmail "net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
)

// readMails returns the contents of the files in dir, failing on anything
// that is not a finished .eml file.
func readMails(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`^\d{8}T\d{6}\.\d{9}Z-[A-Z2-7]{26}\.eml$`)
	mails := map[string][]byte{}
	for _, e := range entries {
		if !name.MatchString(e.Name()) {
			t.Errorf("unexpected file %q in the mail dir", e.Name())
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), perm)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		mails[e.Name()] = b
	}
	return mails
}

func TestDirMailer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deep", "mail")
	d, err := NewDirMailer(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("mail dir has mode %v, want 0700", perm)
	}

	m := Message{From: "no-reply@example.com", To: "ann@example.org", Subject: "Your code", Body: "Your code is 123456.\n"}
	if err := d.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	mails := readMails(t, dir)
	if len(mails) != 1 {
		t.Fatalf("%d files, want 1", len(mails))
	}
	for _, b := range mails {
		checkCRLF(t, b)
		msg, err := netmail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if msg.Header.Get("To") != "<ann@example.org>" || msg.Header.Get("Subject") != "Your code" || msg.Header.Get("Message-ID") == "" {
			t.Errorf("headers %v", msg.Header)
		}
		if got := decodeBody(t, msg); got != m.Body {
			t.Errorf("body %q, want %q", got, m.Body)
		}
	}

	// Refused messages and ended contexts write nothing.
	bad := m
	bad.To = "ann@example.org\r\nBcc: all@example.net"
	if err := d.Send(context.Background(), bad); err == nil {
		t.Error("Send accepted a header injection")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Send(ctx, m); err == nil {
		t.Error("Send with a cancelled context succeeded")
	}
	if n := len(readMails(t, dir)); n != 1 {
		t.Errorf("%d files after refused sends, want 1", n)
	}
}

func TestDirMailerConcurrent(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDirMailer(dir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m := Message{From: "no-reply@example.com", To: "ann@example.org", Subject: "x", Body: fmt.Sprintf("mail %d\n", i)}
			if err := d.Send(context.Background(), m); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	mails := readMails(t, dir)
	if len(mails) != n {
		t.Fatalf("%d files, want %d", len(mails), n)
	}
	bodies := map[string]bool{}
	for _, b := range mails {
		msg, err := netmail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		bodies[decodeBody(t, msg)] = true
	}
	for i := range n {
		if !bodies[fmt.Sprintf("mail %d\n", i)] {
			t.Errorf("mail %d missing", i)
		}
	}
}

func TestNewDirMailerErrors(t *testing.T) {
	if _, err := NewDirMailer(""); err == nil {
		t.Error("empty dir accepted")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDirMailer(file); err == nil {
		t.Error("a regular file accepted as the mail dir")
	}
}
