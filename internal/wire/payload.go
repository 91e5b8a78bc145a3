package wire

import (
	"bytes"

	"lightning-service/internal/core"
)

// PaymentRequest returns the payment request of a decode or pay payload: 400
// characters padded with spaces, or a longer request sent unpadded.
func PaymentRequest(payload []byte) ([]byte, error) {
	if n := runeCount(payload); n < PaymentRequestWidth {
		return nil, core.Errorf(core.CodeMalformedPayload, "payload is %d characters; a payment request field is %d, padded with spaces", n, PaymentRequestWidth)
	}
	return bytes.TrimSpace(payload), nil
}

// CreateFields are the fields of a create payload, checked.
type CreateFields struct {
	AmountSat int64  // >= 0; 0 lets the payer choose
	Memo      []byte // trimmed
	ExpirySec int64  // > 0
}

// MaxAmountSat is the largest invoice LND issues (100,000 BTC), so an amount
// that passes here is never refused by the node for its size.
const MaxAmountSat = 100_000 * 100_000_000

// Create parses a create payload: amount, memo and expiry, 37 characters each.
func Create(payload []byte) (CreateFields, error) {
	var f CreateFields
	if n := runeCount(payload); n != CreatePayloadWidth {
		return f, core.Errorf(core.CodeMalformedPayload, "payload is %d characters; create takes %d (amount, memo, expiry: %d each)", n, CreatePayloadWidth, CreateFieldWidth)
	}
	amountEnd, _ := skipRunes(payload, 0, CreateFieldWidth)
	memoEnd, _ := skipRunes(payload, amountEnd, CreateFieldWidth)

	amount := bytes.TrimSpace(payload[:amountEnd])
	v, ok := parseDigits(trimZeros(amount))
	if !ok || v > MaxAmountSat {
		return f, core.Errorf(core.CodeInvalidAmount, "amount %q is not a whole number of satoshis from 0 to %d", amount, int64(MaxAmountSat))
	}
	f.AmountSat = v

	f.Memo = bytes.TrimSpace(payload[amountEnd:memoEnd])

	expiry := bytes.TrimSpace(payload[memoEnd:])
	v, ok = parseDigits(trimZeros(expiry))
	if !ok || v <= 0 || v > MaxExpirySec {
		return f, core.Errorf(core.CodeInvalidExpiry, "expiry %q is not a whole number of seconds from 1 to %d", expiry, MaxExpirySec)
	}
	f.ExpirySec = v
	return f, nil
}

// MaxExpirySec is the longest expiry LND accepts on an invoice: one year.
const MaxExpirySec = 365 * 24 * 60 * 60

// trimZeros drops leading zeros, so that a zero-padded number of any width
// parses (keeping one digit of an all-zero field), and a fraction of zeros,
// so that a whole number a caller formatted as a decimal ("100.0", as
// Python's str(100.0) writes it) reads as what it says.
func trimZeros(b []byte) []byte {
	if dot := bytes.IndexByte(b, '.'); dot > 0 {
		for _, c := range b[dot+1:] {
			if c != '0' {
				return b // a fraction: not a whole number
			}
		}
		b = b[:dot]
	}
	for len(b) > 1 && b[0] == '0' {
		b = b[1:]
	}
	return b
}

// runeCount counts the characters of b, which Open has checked is valid
// UTF-8: every byte but a continuation byte starts one. (utf8.RuneCount
// allocates on long inputs.)
func runeCount(b []byte) int {
	n := 0
	for _, c := range b {
		if c&0xC0 != 0x80 {
			n++
		}
	}
	return n
}
