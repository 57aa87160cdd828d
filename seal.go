package saga

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Encryption at rest of the secrets a definition holds. The values of its
// secret headers (Definition.IsSecretHeader) are the only secrets the
// service is given; a store that keeps definitions outside the process
// encodes them with Sealer.EncodeDefinition and decodes them with
// Sealer.DecodeDefinition, so that with a key configured
// (DEFINITION_ENCRYPTION_KEY) those values are stored encrypted with
// AES-GCM, and without one as they are. The rest of the definition stays
// plain JSON.
//
// A sealed value reads "tracseq-sealed:v1:<key id>:<base64 of nonce and
// ciphertext>", the key id being the first 8 hex digits of the key's
// SHA-256, so that a Sealer given several keys (the newest first) opens
// what older keys sealed and seals with the newest: keys can be rotated.
// The header's normalized name is the additional data, so a sealed value
// cannot be moved to another header.

// sealedPrefix starts every sealed header value.
const sealedPrefix = "tracseq-sealed:v1:"

// ErrSealed means a stored definition holds sealed values that cannot be
// opened: no key is configured, or none of the keys is the one that sealed
// them.
var ErrSealed = errors.New("definition holds encrypted header values that cannot be decrypted")

// Sealer seals and opens the secret header values of definitions. A nil
// *Sealer is valid: it seals nothing and opens nothing (and refuses a
// definition holding sealed values).
type Sealer struct {
	keys []sealKey // keys[0] seals
}

type sealKey struct {
	id   string
	aead cipher.AEAD
}

// NewSealer returns a Sealer with keys of 16, 24 or 32 bytes (AES-128,
// -192, -256): the first seals, every one opens.
func NewSealer(keys ...[]byte) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no key given")
	}
	s := &Sealer{}
	for i, k := range keys {
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("key %d: must be 16, 24 or 32 bytes (got %d)", i+1, len(k))
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		sum := sha256.Sum256(k)
		s.keys = append(s.keys, sealKey{id: hex.EncodeToString(sum[:4]), aead: aead})
	}
	return s, nil
}

// ParseSealerKeys decodes a comma-separated list of keys, each in base64
// (standard or URL alphabet, padded or not) or hex, newest first. Its
// errors never quote the keys.
func ParseSealerKeys(text string) ([][]byte, error) {
	var keys [][]byte
	for i, part := range strings.Split(text, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, err := decodeKey(part)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key given")
	}
	return keys, nil
}

func decodeKey(s string) ([]byte, error) {
	valid := func(k []byte) bool { return len(k) == 16 || len(k) == 24 || len(k) == 32 }
	if k, err := hex.DecodeString(s); err == nil && valid(k) {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && valid(k) {
			return k, nil
		}
	}
	return nil, errors.New("must be 16, 24 or 32 bytes in base64 or hex (e.g. the output of `openssl rand -base64 32`)")
}

// Seal returns d with the values of its secret headers encrypted, sharing
// nothing with d when it changed anything; d itself when there is nothing
// to seal or s is nil.
func (s *Sealer) Seal(d Definition) (Definition, error) {
	if s == nil || !d.hasSecretValues() {
		return d, nil
	}
	c := d.Clone()
	err := c.eachSecret(func(name string, value *string) error {
		if strings.HasPrefix(*value, sealedPrefix) {
			return nil
		}
		k := s.keys[0]
		nonce := make([]byte, k.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("seal header %q: %w", name, err)
		}
		sealed := k.aead.Seal(nonce, nonce, []byte(*value), []byte(NormalizeHeaderName(name)))
		*value = sealedPrefix + k.id + ":" + base64.RawStdEncoding.EncodeToString(sealed)
		return nil
	})
	return c, err
}

// Open decrypts in place the sealed values of d's secret headers. It
// returns an error wrapping ErrSealed naming the header when one cannot be
// opened (no key, an unknown key, a value altered).
func (s *Sealer) Open(d *Definition) error {
	return d.eachSecret(func(name string, value *string) error {
		rest, ok := strings.CutPrefix(*value, sealedPrefix)
		if !ok {
			return nil
		}
		if s == nil {
			return fmt.Errorf("header %q: %w: no DEFINITION_ENCRYPTION_KEY is configured", name, ErrSealed)
		}
		id, text, _ := strings.Cut(rest, ":")
		var key *sealKey
		for i := range s.keys {
			if s.keys[i].id == id {
				key = &s.keys[i]
			}
		}
		if key == nil {
			return fmt.Errorf("header %q: %w: it was encrypted with a key not configured (key id %s)", name, ErrSealed, id)
		}
		raw, err := base64.RawStdEncoding.DecodeString(text)
		if err != nil || len(raw) < key.aead.NonceSize() {
			return fmt.Errorf("header %q: %w: the stored value is damaged", name, ErrSealed)
		}
		n := key.aead.NonceSize()
		plain, err := key.aead.Open(nil, raw[:n], raw[n:], []byte(NormalizeHeaderName(name)))
		if err != nil {
			return fmt.Errorf("header %q: %w: the stored value does not authenticate", name, ErrSealed)
		}
		*value = string(plain)
		return nil
	})
}

// EncodeDefinition returns the JSON a store keeps for d: d with its secret
// header values sealed.
func (s *Sealer) EncodeDefinition(d *Definition) ([]byte, error) {
	sealed, err := s.Seal(*d)
	if err != nil {
		return nil, err
	}
	return json.Marshal(sealed)
}

// DecodeDefinition decodes JSON made by EncodeDefinition into d and opens
// its sealed values.
func (s *Sealer) DecodeDefinition(raw []byte, d *Definition) error {
	if err := json.Unmarshal(raw, d); err != nil {
		return err
	}
	return s.Open(d)
}

// hasSecretValues reports whether any request of d has a secret header.
func (d *Definition) hasSecretValues() bool {
	found := false
	_ = d.eachSecret(func(string, *string) error { found = true; return nil })
	return found
}

// eachSecret calls fn with the name and a pointer to the value of every
// secret header of d's requests, writing back what fn leaves there.
func (d *Definition) eachSecret(fn func(name string, value *string) error) error {
	visit := func(r *Request) error {
		for name, value := range r.Headers {
			if !d.IsSecretHeader(name) {
				continue
			}
			v := value
			if err := fn(name, &v); err != nil {
				return err
			}
			if v != value {
				r.Headers[name] = v
			}
		}
		return nil
	}
	for i := range d.Steps {
		if err := visit(&d.Steps[i].Action); err != nil {
			return err
		}
		if c := d.Steps[i].Compensation; c != nil {
			if err := visit(c); err != nil {
				return err
			}
		}
	}
	return nil
}
