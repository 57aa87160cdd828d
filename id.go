package saga

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

// ID identifies sagas, steps, events and transactions. It is a UUID; new IDs
// are version 7 so that they sort by creation time, which keeps B-tree
// inserts local and makes ID order a good tiebreak for keyset pagination.
type ID [16]byte

// NilID is the zero ID.
var NilID ID

var (
	idMu       sync.Mutex
	idLastMs   int64
	idSequence uint16
)

// NewID returns a new random version 7 UUID. IDs created within one process
// are strictly increasing, even within the same millisecond.
func NewID() ID {
	var id ID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails on supported platforms.

	idMu.Lock()
	ms := time.Now().UnixMilli()
	if ms <= idLastMs {
		// Same (or earlier) millisecond: bump a 12-bit counter to keep order.
		idSequence++
		if idSequence >= 1<<12 {
			idLastMs++
			idSequence = 0
		}
		ms = idLastMs
	} else {
		idLastMs = ms
		idSequence = binary.BigEndian.Uint16(id[6:8]) & 0x03ff // random start, room to count up
	}
	seq := idSequence
	idMu.Unlock()

	id[0] = byte(ms >> 40)
	id[1] = byte(ms >> 32)
	id[2] = byte(ms >> 24)
	id[3] = byte(ms >> 16)
	id[4] = byte(ms >> 8)
	id[5] = byte(ms)
	id[6] = 0x70 | byte(seq>>8)&0x0f // version 7
	id[7] = byte(seq)
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return id
}

// ParseID parses the canonical 36-character UUID form.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, fmt.Errorf("%q is not a UUID", s)
	}
	var buf [32]byte
	copy(buf[0:8], s[0:8])
	copy(buf[8:12], s[9:13])
	copy(buf[12:16], s[14:18])
	copy(buf[16:20], s[19:23])
	copy(buf[20:32], s[24:36])
	if _, err := hex.Decode(id[:], buf[:]); err != nil {
		return NilID, fmt.Errorf("%q is not a UUID", s)
	}
	return id, nil
}

// IsZero reports whether id is the nil UUID.
func (id ID) IsZero() bool { return id == NilID }

// String returns the canonical lowercase form, e.g.
// 0190f1c2-7a3b-7c4d-8e5f-0123456789ab.
func (id ID) String() string {
	var buf [36]byte
	hex.Encode(buf[0:8], id[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], id[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], id[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], id[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:36], id[10:16])
	return string(buf[:])
}

// MarshalText implements encoding.TextMarshaler (JSON strings).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	parsed, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = parsed
	return nil
}
