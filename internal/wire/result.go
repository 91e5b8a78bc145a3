package wire

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"strconv"
	"time"
)

// Result is the JSON body of a result record.
type Result struct {
	Task string     `json:"task"` // "lightning-" + the request's task
	Data ResultData `json:"data"`
}

// ResultData is a result's data object; its field order is the contract's.
type ResultData struct {
	Message     any    `json:"message"`
	Status      Status `json:"status"`
	RequestID   string `json:"request_id"`
	PaymentHash string `json:"payment_hash,omitempty"` // create success
}

// Status is a result's status.
type Status string

const (
	StatusSuccess Status = "success"
	StatusError   Status = "error"
)

// ErrorMessage is the message of an error result.
type ErrorMessage struct {
	Error        string `json:"error"`
	PaymentError string `json:"payment_error,omitempty"` // pay only
	Detail       string `json:"detail"`
	PaymentHash  string `json:"payment_hash,omitempty"` // pay, when the invoice decoded
}

// TaskPrefix starts every task name on the shared output topic.
const TaskPrefix = "lightning-"

// Sealer signs results with the current key. It reuses its HMAC state and
// buffers and is not safe for concurrent use: give each worker its own.
type Sealer struct {
	mac hash.Hash
	buf bytes.Buffer
	enc *json.Encoder
	sum [sha256.Size]byte
}

// NewSealer returns a Sealer signing with key.
func NewSealer(key []byte) *Sealer {
	s := &Sealer{mac: hmac.New(sha256.New, key)}
	s.enc = json.NewEncoder(&s.buf)
	// Memos are shown to people; keep <, > and & as they are.
	s.enc.SetEscapeHTML(false)
	return s
}

// Seal returns a new record value: the 13-digit timestamp, the compact JSON
// of r and the hex HMAC over both.
func (s *Sealer) Seal(now time.Time, r *Result) ([]byte, error) {
	s.buf.Reset()
	if err := s.enc.Encode(r); err != nil {
		return nil, err
	}
	body := bytes.TrimSuffix(s.buf.Bytes(), []byte{'\n'})
	return s.SealJSON(now, body), nil
}

// SealJSON returns a new record value carrying body, which must be compact
// JSON.
func (s *Sealer) SealJSON(now time.Time, body []byte) []byte {
	out := make([]byte, 0, TimestampWidth+len(body)+SignatureWidth)
	out = appendMillis(out, now)
	out = append(out, body...)
	s.mac.Reset()
	s.mac.Write(out)
	return hex.AppendEncode(out, s.mac.Sum(s.sum[:0]))
}

// appendMillis appends t as Unix milliseconds, zero-padded to the field's 13
// digits.
func appendMillis(dst []byte, t time.Time) []byte {
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], t.UnixMilli(), 10)
	for i := len(d); i < TimestampWidth; i++ {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}
