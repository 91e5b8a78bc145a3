package faultproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const testMacaroon = "0201036c6e64"

// The methods faults are installed for, by their full gRPC names.
const (
	checkMethod = "/grpc.health.v1.Health/Check"
	watchMethod = "/grpc.health.v1.Health/Watch"
)

// target stands in for LND with grpc's health service, which has a unary
// method and a server-streaming one, as LND's AddInvoice and SendPaymentV2
// are. It records the macaroon of every call, and its
// Watch reports how each stream ended.
type target struct {
	grpc_health_v1.UnimplementedHealthServer
	gate     chan struct{} // Watch waits on it after its first response
	watchEnd chan string   // "completed", "cancelled" or "send failed", per Watch

	mu        sync.Mutex
	macaroons []string // per call, in order
}

func (tg *target) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.macaroons = append(tg.macaroons, strings.Join(md.Get("macaroon"), ","))
}

// seen returns the macaroons of the calls the target received.
func (tg *target) seen() []string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]string(nil), tg.macaroons...)
}

// Check answers SERVING, with a header and a trailer; for the service
// "missing" it fails with NotFound and a status detail.
func (tg *target) Check(ctx context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	tg.record(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-target", "header"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-target", "trailer"))
	if req.GetService() == "missing" {
		st, err := status.New(codes.NotFound, "no service missing").
			WithDetails(&grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVICE_UNKNOWN})
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	}
	return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
}

// watchSent is what Watch sends, in order; it waits for the gate after the
// first, as a payment stream waits for the payment to settle.
var watchSent = []grpc_health_v1.HealthCheckResponse_ServingStatus{
	grpc_health_v1.HealthCheckResponse_SERVING,
	grpc_health_v1.HealthCheckResponse_NOT_SERVING,
	grpc_health_v1.HealthCheckResponse_SERVING,
}

func (tg *target) Watch(req *grpc_health_v1.HealthCheckRequest, stream grpc_health_v1.Health_WatchServer) error {
	ctx := stream.Context()
	tg.record(ctx)
	if req.GetService() == "missing" {
		return status.Error(codes.NotFound, "no service missing")
	}
	stream.SetTrailer(metadata.Pairs("x-target", "trailer"))
	for i, s := range watchSent {
		if i == 1 {
			select {
			case <-tg.gate:
			case <-ctx.Done():
				tg.watchEnd <- "cancelled"
				return ctx.Err()
			}
		}
		if err := stream.Send(&grpc_health_v1.HealthCheckResponse{Status: s}); err != nil {
			tg.watchEnd <- "send failed"
			return err
		}
	}
	tg.watchEnd <- "completed"
	return nil
}

// env is a target behind a proxy, and a client of the proxy that sends a
// macaroon the way the service's LND client does.
type env struct {
	proxy  *Proxy
	target *target
	client grpc_health_v1.HealthClient
}

// setup starts a target with TLS, a proxy in front of it serving the same
// certificate, and a client that trusts that certificate. With open, the
// target's Watch streams run without waiting.
func setup(t *testing.T, open bool) *env {
	t.Helper()
	certPath, keyPath := writeCert(t)
	tg := &target{gate: make(chan struct{}), watchEnd: make(chan string, 1000)}
	if open {
		close(tg.gate)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serverCreds, err := credentials.NewServerTLSFromFile(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(serverCreds))
	grpc_health_v1.RegisterHealthServer(srv, tg)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	p, err := Start(t.Context(), Options{Target: lis.Addr().String(), TLSCertPath: certPath, TLSKeyPath: keyPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &env{proxy: p, target: tg, client: dialProxy(t, p, certPath)}
}

func dialProxy(t *testing.T, p *Proxy, certPath string) grpc_health_v1.HealthClient {
	t.Helper()
	clientCreds, err := credentials.NewClientTLSFromFile(certPath, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.DialContext(t.Context(), p.Addr(),
		grpc.WithTransportCredentials(clientCreds),
		grpc.WithPerRPCCredentials(macaroonCred(testMacaroon)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return grpc_health_v1.NewHealthClient(conn)
}

// macaroonCred sends a macaroon as LND's clients do.
type macaroonCred string

func (m macaroonCred) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"macaroon": string(m)}, nil
}

func (macaroonCred) RequireTransportSecurity() bool { return true }

// writeCert writes a self-signed certificate for 127.0.0.1 and its key, as
// LND makes its tls.cert and tls.key.
func writeCert(t *testing.T) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"faultproxy test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "tls.cert"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}
