package sqlite

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ErrLocked is wrapped by Open and by the commands that need the file to
// themselves when another process holds the database: one SQLite file
// serves one process.
var ErrLocked = errors.New("the SQLite database is in use by another process")

// fileLock is the exclusive lock a process holds on a database file for
// as long as it uses it: an advisory lock (flock on Unix, LockFileEx on
// Windows) on the file path + ".lock". The operating system releases it
// when the process ends, however it ends (SIGKILL included), so a crash
// never leaves the file locked.
type fileLock struct {
	f    *os.File
	path string
}

// lockPath is the lock file of the database file path.
func lockPath(path string) string { return path + ".lock" }

// acquireLock takes the lock of the database file path for holder, or
// fails at once, wrapping ErrLocked, naming the process that holds it.
func acquireLock(path, holder string) (*fileLock, error) {
	lp := lockPath(path)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", lp, err)
	}
	if err := lockFile(f); err != nil {
		who, _ := os.ReadFile(lp)
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%s: %w (%s); a SQLite file serves one instance: "+
				"stop that process, or use PostgreSQL (DATABASE_URL=postgres://...) to run several instances",
				path, ErrLocked, describeHolder(string(who)))
		}
		return nil, fmt.Errorf("lock %s: %w", lp, err)
	}
	// Say who holds it, for the error of the next process that tries.
	info := fmt.Sprintf("pid=%d instance=%s since=%s\n", os.Getpid(), holder, time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(info), 0)
	}
	return &fileLock{f: f, path: lp}, nil
}

// describeHolder turns the lock file's content into words for an error.
func describeHolder(content string) string {
	content = strings.TrimSpace(content)
	if content == "" {
		return "holder unknown"
	}
	return "held by " + strings.ReplaceAll(content, "\n", " ")
}

// release gives the lock up. The lock file stays: removing it would race
// with a process opening it.
func (l *fileLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = unlockFile(l.f)
	_ = l.f.Close()
	l.f = nil
}
