package wire

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The caller's side of the format, for tools and tests that send requests
// and read results.

// DecodePayload and PayPayload are the payload of a decode or pay request.
func DecodePayload(paymentRequest string) string {
	return padRight(paymentRequest, PaymentRequestWidth)
}

// PayPayload is the payload of a pay request.
func PayPayload(paymentRequest string) string { return padRight(paymentRequest, PaymentRequestWidth) }

// CreatePayload is the payload of a create request. The memo must fit its 37
// characters.
func CreatePayload(amountSat int64, memo string, expirySec int64) (string, error) {
	if utf8.RuneCountInString(memo) > CreateFieldWidth {
		return "", errors.New("memo is longer than 37 characters")
	}
	return padRight(strconv.FormatInt(amountSat, 10), CreateFieldWidth) +
		padRight(memo, CreateFieldWidth) +
		padRight(strconv.FormatInt(expirySec, 10), CreateFieldWidth), nil
}

// SignRequest returns a request record value: timestamp, task, payload and
// the HMAC over them with key.
func SignRequest(key []byte, ts time.Time, task, payload string) []byte {
	var b bytes.Buffer
	b.Write(appendMillis(nil, ts))
	b.WriteString(padRight(task, TaskWidth))
	b.WriteString(payload)
	m := hmac.New(sha256.New, key)
	m.Write(b.Bytes())
	return hex.AppendEncode(b.Bytes(), m.Sum(nil))
}

// OpenResult checks a result record's signature against keys and returns
// its timestamp and JSON body.
func OpenResult(value []byte, keys ...[]byte) (time.Time, []byte, error) {
	if len(value) < TimestampWidth+2+SignatureWidth {
		return time.Time{}, nil, errors.New("result record too short")
	}
	ms, ok := parseDigits(value[:TimestampWidth])
	if !ok {
		return time.Time{}, nil, errors.New("result timestamp is not 13 digits")
	}
	signed, sig := value[:len(value)-SignatureWidth], value[len(value)-SignatureWidth:]
	var want [sha256.Size]byte
	if _, err := hex.Decode(want[:], sig); err != nil {
		return time.Time{}, nil, errors.New("result signature is not hex")
	}
	for _, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write(signed)
		if hmac.Equal(m.Sum(nil), want[:]) {
			return time.UnixMilli(ms), signed[TimestampWidth:], nil
		}
	}
	return time.Time{}, nil, errors.New("result signature matches no key")
}

func padRight(s string, width int) string {
	if n := utf8.RuneCountInString(s); n < width {
		return s + strings.Repeat(" ", width-n)
	}
	return s
}
