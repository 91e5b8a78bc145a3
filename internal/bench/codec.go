package bench

import (
	"testing"
	"time"

	"lightning-service/internal/wire"
)

// codecInvoice is a regtest BOLT11 request of typical length; the codec
// only measures the envelope, so any text of that shape does.
const codecInvoice = "lnbcrt10u1p5xyzpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsdqqcqzzsxqyz5vqsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9qxpqysgq" +
	"l8w7s6ld7a3v6wqnqz3gv9k7y5w9y4v2u6e6m9q9r3f6w6y7h9f3g8s3x2v5p7t9s3v6y8d2t4r5k8g2n6m8p3s5v7x9y2z4b6c8d0f2h4j6"

// MeasureCodec runs the service's verify+parse of a decode and a create
// request in process, as the wire package's BenchmarkOpen and
// BenchmarkOpenCreate do, on one goroutine: the per-core rate.
func MeasureCodec() map[string]Codec {
	key := []byte("bench-codec-key")
	now := time.Now()
	ver := wire.Keys{Current: key}.Verifier(5 * time.Minute)
	createPayload, _ := wire.CreatePayload(2500, "a coffee ☕ for bob", 3600)
	kinds := map[string]struct {
		value []byte
		parse func([]byte) error
	}{
		"decode": {wire.SignRequest(key, now, "decode", wire.DecodePayload(codecInvoice)),
			func(p []byte) error { _, err := wire.PaymentRequest(p); return err }},
		"create": {wire.SignRequest(key, now, "create", createPayload),
			func(p []byte) error { _, err := wire.Create(p); return err }},
	}
	out := make(map[string]Codec)
	for name, k := range kinds {
		var failed error
		r := testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				req, err := ver.Open(k.value, now)
				if err == nil {
					err = k.parse(req.Payload)
				}
				if err != nil {
					failed = err
					return
				}
			}
		})
		if failed != nil || r.N == 0 {
			continue
		}
		ns := float64(r.T.Nanoseconds()) / float64(r.N)
		out[name] = Codec{NsPerOp: ns, PerSecCore: 1e9 / ns, AllocsPerOp: r.AllocsPerOp(), BytesPerOp: r.AllocedBytesPerOp(),
			Iterations: r.N, RequestBytes: len(k.value)}
	}
	return out
}
