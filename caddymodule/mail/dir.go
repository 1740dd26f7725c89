package mail

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DirMailer is the development mailer: it writes each mail, headers and
// body, to its own file <UTC time>-<random>.eml in a directory, where a
// developer or a test can read it. The files hold one-time codes and reset
// links, so the directory is 0700 and each file 0600.
type DirMailer struct {
	dir string
}

// NewDirMailer returns a DirMailer writing into dir, which it creates (0700)
// if needed.
func NewDirMailer(dir string) (*DirMailer, error) {
	if dir == "" {
		return nil, errors.New("mail dir: empty path")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mail dir: %w", err)
	}
	return &DirMailer{dir: dir}, nil
}

// Dir returns the directory d writes into.
func (d *DirMailer) Dir() string { return d.dir }

// String describes d for logs.
func (d *DirMailer) String() string { return "mail_dir " + d.dir }

// Send writes m to a new file. It writes a hidden temporary file first and
// renames it into place, so a reader (a test waiting for the mail) never
// sees half a message. File names sort by time; the random part keeps
// concurrent sends apart.
func (d *DirMailer) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write mail: %w", err)
	}
	now := time.Now()
	data, err := m.Bytes(now)
	if err != nil {
		return fmt.Errorf("write mail: %w", err)
	}
	name := filepath.Join(d.dir, now.UTC().Format("20060102T150405.000000000Z")+"-"+rand.Text()+".eml")

	f, err := os.CreateTemp(d.dir, ".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("write mail: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write mail: %w", err)
	}
	return nil
}
