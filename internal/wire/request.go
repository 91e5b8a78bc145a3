// Package wire is the service's signed, fixed-width text format: it opens and
// authenticates requests and seals results (docs/protocol.md). It is pure: no
// I/O, no clock of its own, no logging.
package wire

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"time"
	"unicode/utf8"
)

// Field widths, in characters.
const (
	TimestampWidth      = 13
	TaskWidth           = 16
	SignatureWidth      = 64
	PaymentRequestWidth = 400
	CreateFieldWidth    = 37
	CreatePayloadWidth  = 3 * CreateFieldWidth

	headerWidth = TimestampWidth + TaskWidth
	minWidth    = headerWidth + SignatureWidth
)

// Task names a request's task.
type Task uint8

const (
	TaskUnknown Task = iota
	TaskDecode
	TaskPay
	TaskCreate
)

func (t Task) String() string {
	switch t {
	case TaskDecode:
		return "decode"
	case TaskPay:
		return "pay"
	case TaskCreate:
		return "create"
	}
	return "unknown"
}

// Request is an authenticated request. Its byte fields point into the record
// value it was opened from; they are valid as long as that value is.
type Request struct {
	Timestamp time.Time
	Task      Task
	TaskName  []byte // the task field, trimmed of spaces
	Payload   []byte // everything between the task field and the signature
	Signature [sha256.Size]byte
}

// ID is the request id: its signature in lowercase hex.
func (r *Request) ID() string { return hex.EncodeToString(r.Signature[:]) }

// Verifier opens requests. It holds one keyed HMAC state per key and reuses
// them, so opening a request allocates nothing. A Verifier is not safe for
// concurrent use: give each worker its own (Keys.Verifier).
type Verifier struct {
	macs    []hash.Hash
	maxSkew time.Duration
	sum     [sha256.Size]byte
}

// Keys are the HMAC keys a service instance knows: Current signs results and
// is tried first; Previous are rotated-out keys still accepted on requests.
type Keys struct {
	Current  []byte
	Previous [][]byte
}

// Verifier returns a new Verifier accepting every key, with requests allowed
// to be at most maxSkew away from the receiver's clock, in both directions.
func (k Keys) Verifier(maxSkew time.Duration) *Verifier {
	v := &Verifier{maxSkew: maxSkew}
	v.macs = append(v.macs, hmac.New(sha256.New, k.Current))
	for _, p := range k.Previous {
		v.macs = append(v.macs, hmac.New(sha256.New, p))
	}
	return v
}

// Open checks value in the contract's order (shape, signature, clock) and
// returns the authenticated request. A rejected record gets a *RejectError;
// nothing it says may be acted on, with one exception: a StaleTimestamp
// rejection comes with the request, authenticated, so that the caller may
// recognise one it has seen before (inside the window) by its ID.
func (v *Verifier) Open(value []byte, now time.Time) (Request, error) {
	var r Request
	if !utf8.Valid(value) {
		return r, rejectf(Malformed, "record is not valid UTF-8")
	}
	if len(value) < minWidth {
		return r, rejectf(Malformed, "record is %d characters, shorter than the %d of timestamp, task and signature", utf8.RuneCount(value), minWidth)
	}
	signed, sig := value[:len(value)-SignatureWidth], value[len(value)-SignatureWidth:]
	ms, ok := parseDigits(value[:TimestampWidth])
	if !ok {
		return r, rejectf(Malformed, "timestamp %q is not %d digits", value[:TimestampWidth], TimestampWidth)
	}
	// The signature is ASCII, so its 64 characters are its last 64 bytes.
	if _, err := hex.Decode(r.Signature[:], sig); err != nil {
		return r, rejectf(Malformed, "signature is not %d hex digits", SignatureWidth)
	}
	taskEnd, ok := skipRunes(signed, TimestampWidth, TaskWidth)
	if !ok {
		return r, rejectf(Malformed, "record has no room for a %d-character task field before the signature", TaskWidth)
	}

	if !v.verify(signed, r.Signature[:]) {
		return r, rejectf(BadSignature, "signature matches none of the configured keys")
	}

	r.Timestamp = time.UnixMilli(ms)
	r.TaskName = bytes.TrimSpace(signed[TimestampWidth:taskEnd])
	r.Task = lookupTask(r.TaskName)
	r.Payload = signed[taskEnd:]
	if d := now.Sub(r.Timestamp); d > v.maxSkew || -d > v.maxSkew {
		return r, rejectf(StaleTimestamp, "timestamp %d is %s away from the service clock, beyond the allowed %s", ms, d.Round(time.Millisecond), v.maxSkew)
	}
	return r, nil
}

// verify reports whether sig is the HMAC of signed under any key, comparing in
// constant time.
func (v *Verifier) verify(signed, sig []byte) bool {
	for _, mac := range v.macs {
		mac.Reset()
		mac.Write(signed)
		if hmac.Equal(mac.Sum(v.sum[:0]), sig) {
			return true
		}
	}
	return false
}

func lookupTask(name []byte) Task {
	switch string(name) { // no allocation: the compiler compares in place
	case "decode":
		return TaskDecode
	case "pay":
		return TaskPay
	case "create":
		return TaskCreate
	}
	return TaskUnknown
}

// parseDigits parses ASCII decimal digits only: no sign, no spaces.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// skipRunes returns the byte offset n characters after from in b.
func skipRunes(b []byte, from, n int) (int, bool) {
	i := from
	for ; n > 0 && i < len(b); n-- {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		_, size := utf8.DecodeRune(b[i:])
		i += size
	}
	return i, n == 0
}

// Reason is why a record was dead-lettered.
type Reason string

const (
	Malformed      Reason = "malformed"
	BadSignature   Reason = "bad_signature"
	StaleTimestamp Reason = "stale_timestamp"
)

// RejectError is a record that failed authentication or could not be read as
// a request. Detail is safe to publish: it never echoes a key.
type RejectError struct {
	Reason Reason
	Detail string
}

func (e *RejectError) Error() string { return string(e.Reason) + ": " + e.Detail }

func rejectf(reason Reason, format string, args ...any) *RejectError {
	return &RejectError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}
