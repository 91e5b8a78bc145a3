package lightning

import (
	"encoding/hex"
	"fmt"
)

// ParseHash parses a 64-character hex hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("hash %q: want %d hex characters, got %d", s, 2*len(h), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("hash %q: %w", s, err)
	}
	return h, nil
}

// String returns the hash as lowercase hex, as LND and the wire format write it.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText makes a Hash a hex string in JSON rather than an array of numbers.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses the hex form written by MarshalText.
func (h *Hash) UnmarshalText(text []byte) error {
	parsed, err := ParseHash(string(text))
	if err != nil {
		return err
	}
	*h = parsed
	return nil
}
