package faultproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// wait bounds every wait of a test, so that a broken proxy fails instead of
// hanging the suite.
const wait = 10 * time.Second

func check(t *testing.T, e *env, opts ...grpc.CallOption) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	resp, err := e.client.Check(ctx, &grpc_health_v1.HealthCheckRequest{}, opts...)
	if err == nil && resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("Check: status %v, want SERVING", resp.GetStatus())
	}
	return err
}

func watch(t *testing.T, e *env) grpc_health_v1.Health_WatchClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	t.Cleanup(cancel)
	stream, err := e.client.Watch(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// recvAll reads a stream to its end and returns the statuses and the error
// that ended it (nil for a clean end).
func recvAll(stream grpc_health_v1.Health_WatchClient) ([]grpc_health_v1.HealthCheckResponse_ServingStatus, error) {
	var got []grpc_health_v1.HealthCheckResponse_ServingStatus
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, resp.GetStatus())
	}
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
}

func wantEnd(t *testing.T, tg *target, want string) {
	t.Helper()
	select {
	case got := <-tg.watchEnd:
		if got != want {
			t.Fatalf("the target's Watch ended %s, want %s", got, want)
		}
	case <-time.After(wait):
		t.Fatalf("the target's Watch has not ended, want %s", want)
	}
}

func TestUnaryPassesThroughUnchanged(t *testing.T) {
	e := setup(t, true)
	var header, trailer metadata.MD
	if err := check(t, e, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	if got := e.target.seen(); !slices.Equal(got, []string{testMacaroon}) {
		t.Fatalf("the target saw macaroons %q, want %q", got, testMacaroon)
	}
	if header.Get("x-target")[0] != "header" || trailer.Get("x-target")[0] != "trailer" {
		t.Fatalf("header %v, trailer %v: the target's metadata did not come back", header, trailer)
	}

	// An error comes back with its code, message, details and trailer.
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	trailer = nil
	_, err := e.client.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "missing"}, grpc.Trailer(&trailer))
	st := status.Convert(err)
	if st.Code() != codes.NotFound || st.Message() != "no service missing" {
		t.Fatalf("got %v, want NotFound: no service missing", err)
	}
	if d := st.Details(); len(d) != 1 || d[0].(*grpc_health_v1.HealthCheckResponse).GetStatus() != grpc_health_v1.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Fatalf("details %v, want the target's SERVICE_UNKNOWN", d)
	}
	if len(trailer.Get("x-target")) != 1 {
		t.Fatalf("trailer %v: the target's trailer did not come back with its error", trailer)
	}
}

func TestStreamPassesThroughUnchanged(t *testing.T) {
	e := setup(t, true)
	stream := watch(t, e)
	got, err := recvAll(stream)
	if err != nil || !slices.Equal(got, watchSent) {
		t.Fatalf("got %v, %v; want %v and a clean end", got, err, watchSent)
	}
	if stream.Trailer().Get("x-target") == nil {
		t.Fatalf("trailer %v: the target's trailer did not come back", stream.Trailer())
	}
	wantEnd(t, e.target, "completed")
	if got := e.target.seen(); !slices.Equal(got, []string{testMacaroon}) {
		t.Fatalf("the target saw macaroons %q, want %q", got, testMacaroon)
	}

	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	stream, err = e.client.Watch(ctx, &grpc_health_v1.HealthCheckRequest{Service: "missing"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = recvAll(stream)
	wantCode(t, err, codes.NotFound)
}

func TestTargetDownIsUnavailable(t *testing.T) {
	certPath, keyPath := writeCert(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	p, err := Start(t.Context(), Options{Target: addr, TLSCertPath: certPath, TLSKeyPath: keyPath})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	e := &env{proxy: p, client: dialProxy(t, p, certPath)}
	wantCode(t, check(t, e), codes.Unavailable)
}

// TestNotLinkedByService keeps the harness out of what ships.
func TestNotLinkedByService(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the service's dependencies")
	}
	out, err := exec.Command(goTool, "list", "-deps", "lightning-service/cmd/lightning-service").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "lightning-service/internal/faultproxy" {
			t.Fatal("cmd/lightning-service links internal/faultproxy, a test harness")
		}
	}
}
