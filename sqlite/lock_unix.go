//go:build unix

package sqlite

import (
	"errors"
	"os"
	"syscall"
)

// errWouldBlock is lockFile's answer when another process holds the lock.
var errWouldBlock = syscall.EWOULDBLOCK

// lockFile takes an exclusive flock on f without waiting. flock locks
// belong to the open file, not to the process, so a second Open in the
// same process is refused too; they are independent of the POSIX locks
// SQLite takes on the database file itself.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
