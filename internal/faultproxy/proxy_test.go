package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
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

func wantSeen(t *testing.T, tg *target, n int) {
	t.Helper()
	if got := len(tg.seen()); got != n {
		t.Fatalf("the target received %d calls, want %d", got, n)
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
	if n := e.proxy.Calls(checkMethod); n != 2 {
		t.Fatalf("Calls(%s) = %d, want 2", checkMethod, n)
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

func TestBreakAfterForwardUnary(t *testing.T) {
	e := setup(t, true)
	e.proxy.Inject(checkMethod, BreakAfterForward(codes.OK))
	var header metadata.MD
	wantCode(t, check(t, e, grpc.Header(&header)), codes.Unavailable) // OK means Unavailable
	wantSeen(t, e.target, 1)
	if header.Get("x-target") != nil {
		t.Fatalf("header %v: the target's header reached the client of a broken call", header)
	}
	if err := check(t, e); err != nil { // the fault applied once
		t.Fatal(err)
	}
}

func TestBreakAfterForwardStreamCancelsTarget(t *testing.T) {
	e := setup(t, false)
	e.proxy.Inject(watchMethod, BreakAfterForward(codes.Unavailable))
	got, err := recvAll(watch(t, e))
	if len(got) != 0 {
		t.Fatalf("the client received %v before the break, want nothing", got)
	}
	wantCode(t, err, codes.Unavailable)
	wantEnd(t, e.target, "cancelled")
}

func TestBreakAfterForwardKeepUpstream(t *testing.T) {
	e := setup(t, false)
	e.proxy.Inject(watchMethod, BreakAfterForward(codes.Unavailable).KeepUpstream())
	_, err := recvAll(watch(t, e))
	wantCode(t, err, codes.Unavailable)
	close(e.target.gate)
	wantEnd(t, e.target, "completed") // every Send succeeded after the client's call broke
}

func TestCloseEndsKeptCalls(t *testing.T) {
	e := setup(t, false)
	e.proxy.Inject(watchMethod, BreakAfterForward(codes.Unavailable).KeepUpstream())
	_, err := recvAll(watch(t, e))
	wantCode(t, err, codes.Unavailable)
	e.proxy.Close()
	wantEnd(t, e.target, "cancelled")
	wantCode(t, check(t, e), codes.Unavailable)
}

func TestBreakAfterResponses(t *testing.T) {
	e := setup(t, true)
	e.proxy.Inject(watchMethod, BreakAfterResponses(2, codes.Internal))
	got, err := recvAll(watch(t, e))
	if !slices.Equal(got, watchSent[:2]) {
		t.Fatalf("the client received %v, want %v", got, watchSent[:2])
	}
	wantCode(t, err, codes.Internal)
}

func TestBreakAfterResponsesCancelsTarget(t *testing.T) {
	e := setup(t, false)
	e.proxy.Inject(watchMethod, BreakAfterResponses(1, codes.OK))
	got, err := recvAll(watch(t, e))
	if !slices.Equal(got, watchSent[:1]) {
		t.Fatalf("the client received %v, want %v", got, watchSent[:1])
	}
	wantCode(t, err, codes.Unavailable)
	wantEnd(t, e.target, "cancelled")
}

func TestAnswerForwardsNothing(t *testing.T) {
	e := setup(t, true)
	e.proxy.Inject(checkMethod, Answer(codes.ResourceExhausted, "node busy"))
	err := check(t, e)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "node busy" {
		t.Fatalf("got %v, want ResourceExhausted: node busy", err)
	}
	wantSeen(t, e.target, 0)
	if n := e.proxy.Calls(checkMethod); n != 1 {
		t.Fatalf("Calls = %d, want 1", n)
	}
}

func TestDelay(t *testing.T) {
	e := setup(t, true)
	const d = 300 * time.Millisecond
	e.proxy.Inject(checkMethod, Delay(d))
	start := time.Now()
	if err := check(t, e); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < d {
		t.Fatalf("the delayed call took %v, want %v or more", took, d)
	}
	start = time.Now()
	if err := check(t, e); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= d {
		t.Fatalf("the next call took %v: the delay applied twice", took)
	}

	// A client whose deadline comes first: the target never sees the call.
	e.proxy.Inject(checkMethod, Delay(time.Hour))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := e.client.Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	wantCode(t, err, codes.DeadlineExceeded)
	wantSeen(t, e.target, 2)
}

func TestHold(t *testing.T) {
	e := setup(t, true)

	// A client that gives up on a held call gets its deadline. This hold is
	// never cleared, so the call never reaches the target.
	e.proxy.Inject(checkMethod, Hold())
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	_, err := e.client.Check(short, &grpc_health_v1.HealthCheckRequest{})
	wantCode(t, err, codes.DeadlineExceeded)

	held := e.proxy.Inject(checkMethod, Hold().UntilCleared())
	results := make(chan error, 2)
	for range 2 {
		go func() { results <- check(t, e) }()
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := e.proxy.WaitCalls(ctx, checkMethod, 3); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-results:
		t.Fatalf("a held call returned %v before the hold was cleared", err)
	default:
	}
	wantSeen(t, e.target, 0)

	held.Clear()
	for range 2 {
		if err := <-results; err != nil {
			t.Fatalf("a released call: %v", err)
		}
	}
	wantSeen(t, e.target, 2)
	if err := check(t, e); err != nil { // cleared: calls pass again
		t.Fatal(err)
	}
}

func TestDropConnections(t *testing.T) {
	e := setup(t, false)
	stream := watch(t, e)
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if n := e.proxy.DropConnections(); n != 1 {
		t.Fatalf("DropConnections closed %d connections, want 1", n)
	}
	_, err := recvAll(stream)
	wantCode(t, err, codes.Unavailable)
	wantEnd(t, e.target, "cancelled")
	// The client reconnects; WaitForReady rides over its reconnecting.
	if err := check(t, e, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
}

func TestTimesAndClear(t *testing.T) {
	e := setup(t, true)
	e.proxy.Inject(checkMethod, Answer(codes.Unavailable, "down").Times(2))
	wantCode(t, check(t, e), codes.Unavailable)
	wantCode(t, check(t, e), codes.Unavailable)
	if err := check(t, e); err != nil {
		t.Fatalf("the third call: %v, want it passed through", err)
	}

	e.proxy.Inject(checkMethod, Answer(codes.Unavailable, "down").UntilCleared())
	for range 3 {
		wantCode(t, check(t, e), codes.Unavailable)
	}
	e.proxy.Clear(checkMethod)
	if err := check(t, e); err != nil {
		t.Fatalf("after Clear: %v", err)
	}

	// A fault installed for a method replaces the one before; other methods
	// are unaffected.
	e.proxy.Inject(checkMethod, Answer(codes.Unavailable, "down").UntilCleared())
	e.proxy.Inject(checkMethod, Answer(codes.Aborted, "replaced"))
	wantCode(t, check(t, e), codes.Aborted)
	if err := check(t, e); err != nil {
		t.Fatalf("after the replacing fault's one use: %v", err)
	}
	e.proxy.Inject(watchMethod, Answer(codes.Unavailable, "down"))
	if err := check(t, e); err != nil {
		t.Fatalf("a fault for Watch applied to Check: %v", err)
	}
	if n := e.proxy.Calls(checkMethod); n != 10 {
		t.Fatalf("Calls(%s) = %d, want 10", checkMethod, n)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := e.proxy.WaitCalls(ctx, checkMethod, 11); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitCalls for a call that never comes: %v", err)
	}
}

// TestConcurrent runs calls of both kinds from many goroutines while faults
// come and go; with -race it checks the proxy's own synchronisation.
func TestConcurrent(t *testing.T) {
	e := setup(t, true)
	const workers, calls = 8, 20
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()

	waited := make(chan error, 1)
	go func() { waited <- e.proxy.WaitCalls(ctx, checkMethod, workers*calls) }()
	stop := make(chan struct{})
	toggled := make(chan struct{})
	go func() {
		defer close(toggled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			in := e.proxy.Inject(checkMethod, Answer(codes.Unavailable, "flaky").UntilCleared())
			e.proxy.Inject(watchMethod, BreakAfterResponses(1, codes.Unavailable).Times(2))
			time.Sleep(time.Millisecond)
			in.Clear()
			e.proxy.Calls(watchMethod)
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, workers*calls*2)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				if _, err := e.client.Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil && status.Code(err) != codes.Unavailable {
					errs <- err
				}
				stream, err := e.client.Watch(ctx, &grpc_health_v1.HealthCheckRequest{})
				if err != nil {
					errs <- err
					continue
				}
				if _, err := recvAll(stream); err != nil && status.Code(err) != codes.Unavailable {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-toggled
	close(errs)
	for err := range errs {
		t.Errorf("a call failed other than by a fault: %v", err)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{checkMethod, watchMethod} {
		if n := e.proxy.Calls(m); n != workers*calls {
			t.Errorf("Calls(%s) = %d, want %d", m, n, workers*calls)
		}
	}
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
