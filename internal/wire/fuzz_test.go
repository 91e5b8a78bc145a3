package wire_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"lightning-service/internal/wire"
	"lightning-service/internal/wire/wiretest"
)

// FuzzOpen: Open never panics, and never accepts a record whose signature
// does not verify under a configured key, checked here independently.
func FuzzOpen(f *testing.F) {
	v := wiretest.Load(f)
	for _, c := range v.Valid {
		f.Add([]byte(c.Value))
	}
	for _, c := range v.Rejected {
		f.Add([]byte(c.Value))
	}
	for _, c := range v.Invalid {
		f.Add([]byte(c.Value))
	}
	keys := append([]string{v.Key}, v.PreviousKeys...)
	ver := keysOf(v).Verifier(time.Duration(v.MaxSkewMS) * time.Millisecond)
	now := time.UnixMilli(v.NowMS)

	f.Fuzz(func(t *testing.T, value []byte) {
		r, err := ver.Open(value, now)
		if err != nil {
			return
		}
		signed, sig := value[:len(value)-64], value[len(value)-64:]
		ok := false
		for _, k := range keys {
			m := hmac.New(sha256.New, []byte(k))
			m.Write(signed)
			if strings.EqualFold(hex.EncodeToString(m.Sum(nil)), string(sig)) {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("accepted a record that no key signed: %q", value)
		}
		// Payload parsing must not panic either.
		_, _ = wire.PaymentRequest(r.Payload)
		_, _ = wire.Create(r.Payload)
	})
}

// BenchmarkOpen measures verify+parse of a pay request, the hot path.
func BenchmarkOpen(b *testing.B) {
	v := wiretest.Load(b)
	value := []byte(v.Valid[1].Value)
	ver := keysOf(v).Verifier(time.Duration(v.MaxSkewMS) * time.Millisecond)
	now := time.UnixMilli(v.NowMS)
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	for b.Loop() {
		r, err := ver.Open(value, now)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := wire.PaymentRequest(r.Payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenCreate is the same for a create request with a multi-byte memo.
func BenchmarkOpenCreate(b *testing.B) {
	v := wiretest.Load(b)
	value := []byte(v.Valid[3].Value)
	ver := keysOf(v).Verifier(time.Duration(v.MaxSkewMS) * time.Millisecond)
	now := time.UnixMilli(v.NowMS)
	b.ReportAllocs()
	for b.Loop() {
		r, err := ver.Open(value, now)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := wire.Create(r.Payload); err != nil {
			b.Fatal(err)
		}
	}
}
