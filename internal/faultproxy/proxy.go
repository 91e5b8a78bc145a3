// Package faultproxy is a gRPC proxy for end-to-end tests. Placed between the
// service and a real LND, it passes every call through unchanged until a test
// injects a fault for a method; then that method's answers go missing, come
// late, come broken, or never come, at exactly the point the test names.
//
// It is a test harness: nothing that ships may import it, and a test in this
// package checks that cmd/lightning-service does not.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Options says where the proxy forwards to and which certificate it serves.
type Options struct {
	// Target is host:port of the node's gRPC interface, e.g. "127.0.0.1:10009".
	Target string
	// TLSCertPath and TLSKeyPath are the node's own tls.cert and tls.key. The
	// proxy serves them, so a client that trusts the node trusts the proxy
	// unchanged, and it checks the target against the same certificate.
	TLSCertPath string
	TLSKeyPath  string
}

// Proxy is a running proxy. Its methods are safe for concurrent use.
type Proxy struct {
	lis  *connListener
	srv  *grpc.Server
	conn *grpc.ClientConn // to the target, shared by all calls

	ctx    context.Context // ends at Close; parent of calls kept past their client
	cancel context.CancelFunc
	kept   sync.WaitGroup // calls kept running after their client's call broke
	served chan struct{}  // closed when Serve returns
	stop   func() bool    // stops closing on the end of Start's ctx
	closed sync.Once

	mu      sync.Mutex
	closing bool                  // set by Close: no more calls are kept
	calls   map[string]int        // calls received, by full method name
	called  chan struct{}         // closed and replaced at every call, to wake WaitCalls
	faults  map[string]*Injection // the fault installed for each method
}

// reconnectBackoff is the service's own (lnd.Dial): after the node restarts,
// the proxy must find it again as soon as the service would without it.
var reconnectBackoff = backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}

// Start listens on a free port of 127.0.0.1 and forwards every call it
// receives to opts.Target. The proxy closes when ctx ends or at Close.
func Start(ctx context.Context, opts Options) (*Proxy, error) {
	if opts.Target == "" {
		return nil, errors.New("faultproxy: Options.Target is empty")
	}
	serverCreds, err := credentials.NewServerTLSFromFile(opts.TLSCertPath, opts.TLSKeyPath)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: TLS certificate %q and key %q: %w", opts.TLSCertPath, opts.TLSKeyPath, err)
	}
	clientCreds, err := credentials.NewClientTLSFromFile(opts.TLSCertPath, "")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: TLS certificate %q: %w", opts.TLSCertPath, err)
	}
	// Without grpc.WithBlock the dial returns at once: a proxy may start
	// before its node, and answers Unavailable until the node is up, as the
	// node itself would.
	conn, err := grpc.DialContext(ctx, opts.Target,
		grpc.WithTransportCredentials(clientCreds),
		// Size limits are the endpoints' business, not the proxy's: LND's
		// payment updates outgrow gRPC's default 4 MiB.
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnectBackoff, MinConnectTimeout: 5 * time.Second}),
	)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target %s: %w", opts.Target, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{
		lis:    &connListener{Listener: l, conns: map[net.Conn]struct{}{}},
		conn:   conn,
		served: make(chan struct{}),
		calls:  map[string]int{},
		called: make(chan struct{}),
		faults: map[string]*Injection{},
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.srv = grpc.NewServer(
		grpc.Creds(serverCreds),
		grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(p.handle),
		grpc.MaxRecvMsgSize(math.MaxInt32),
		// The service pings every 30 s during calls; gRPC's default policy
		// (5 min) would end its connection for it. LND allows every 5 s.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second}),
	)
	go func() {
		defer close(p.served)
		_ = p.srv.Serve(p.lis) // returns once Close stops the server
	}()
	p.stop = context.AfterFunc(ctx, func() { p.Close() })
	return p, nil
}

// Addr is the proxy's host:port, to give the service instead of the node's.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Close stops the proxy: client connections close, calls in progress end,
// and calls kept running for KeepUpstream are cancelled.
func (p *Proxy) Close() error {
	p.closed.Do(func() {
		p.stop()
		p.mu.Lock()
		p.closing = true
		p.mu.Unlock()
		p.cancel()
		p.srv.Stop() // does not wait for the calls it ends
		<-p.served
		p.kept.Wait()
		p.conn.Close()
	})
	return nil
}

// DropConnections closes every client connection at once, under gRPC, as a
// network failure would: calls in progress fail with Unavailable and the
// clients must reconnect. It returns how many connections it closed.
func (p *Proxy) DropConnections() int { return p.lis.closeAll() }

// handle serves every call: the proxy registers no service, so gRPC hands
// each call to it with the method's name and the messages as raw bytes.
func (p *Proxy) handle(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	in := p.arrive(method)
	if in == nil {
		return p.forward(ss, method, Fault{kind: passThrough})
	}
	ctx := ss.Context()
	f := in.fault
	switch f.kind {
	case answer:
		return status.Error(f.code, f.msg)
	case delay:
		t := time.NewTimer(f.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	case hold:
		select {
		case <-in.cleared:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return p.forward(ss, method, f)
}

// anyStream serves unary and streaming calls alike: a unary call is a stream
// of one message each way.
var anyStream = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// forward makes the client's call on the target with the client's metadata
// (the macaroon) and deadline, relays messages both ways, and returns the
// target's status and trailers, unless f breaks the call first.
func (p *Proxy) forward(ss grpc.ServerStream, method string, f Fault) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	parent := ss.Context()
	if f.kind == breakAfter && f.keep {
		// A kept call must outlive its client's, so it hangs off the
		// proxy's own context and has no deadline.
		parent = p.ctx
	}
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(parent, md))
	broken := false // breakCall takes over cancel
	defer func() {
		if !broken {
			cancel()
		}
	}()
	up, err := p.conn.NewStream(ctx, anyStream, method)
	if err != nil {
		return err // already a status: Unavailable while the target is down
	}
	requests := make(chan struct{})
	go func() {
		defer close(requests)
		forwardRequests(ss, up, cancel)
	}()

	if f.kind == breakAfter && f.responses == 0 {
		<-requests
		// SendMsg returning means only that the request is buffered in
		// this process; cancelling then could drop it unsent. The target's
		// response headers prove it received the request and began on it
		// (for a unary call, finished it), which is what a test of a lost
		// answer needs to be certain of.
		_, _ = up.Header()
		broken = true
		return p.breakCall(up, cancel, f)
	}
	header, err := up.Header()
	if err != nil {
		return err
	}
	if header != nil { // nil when the target answered with a status alone
		if err := ss.SendHeader(header); err != nil {
			return err
		}
	}
	for relayed := 0; ; relayed++ {
		if f.kind == breakAfter && relayed == f.responses {
			broken = true
			return p.breakCall(up, cancel, f)
		}
		var m frame
		if err := up.RecvMsg(&m); err != nil {
			ss.SetTrailer(up.Trailer())
			if err == io.EOF {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(&m); err != nil {
			return err
		}
	}
}

// forwardRequests relays the client's messages to the target and closes the
// target's side when the client closes its own. A client that fails mid-way
// cancels the target's call, which could never be completed.
func forwardRequests(ss grpc.ServerStream, up grpc.ClientStream, cancel context.CancelFunc) {
	for {
		var m frame
		if err := ss.RecvMsg(&m); err != nil {
			if err == io.EOF {
				_ = up.CloseSend()
			} else {
				cancel()
			}
			return
		}
		if err := up.SendMsg(&m); err != nil {
			return // the target ended the call; its status comes with RecvMsg
		}
	}
}

// breakCall ends the client's call with f's code. The target's call is
// cancelled, or with KeepUpstream read to its end, so the target finishes
// what it started as if the client were still there.
func (p *Proxy) breakCall(up grpc.ClientStream, cancel context.CancelFunc, f Fault) error {
	p.mu.Lock()
	keep := f.keep && !p.closing // Add must not race Close's Wait
	if keep {
		p.kept.Add(1)
	}
	p.mu.Unlock()
	if keep {
		go func() {
			defer p.kept.Done()
			defer cancel()
			for {
				var m frame
				if up.RecvMsg(&m) != nil {
					return
				}
			}
		}()
	} else {
		cancel()
	}
	return status.Error(f.code, "faultproxy: call broken by the test")
}

// frame is one message as it travels on the wire.
type frame struct{ data []byte }

// rawCodec passes messages through as the bytes they are: the proxy needs no
// message types, so one proxy serves every service LND has. It is named
// "proto" because the target chooses its codec by this name (the call's
// content-type becomes application/grpc+proto) and must decode the frames
// as the protobufs they are.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("faultproxy: cannot marshal %T", v)
	}
	return m.data, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("faultproxy: cannot unmarshal into %T", v)
	}
	m.data = append([]byte(nil), data...) // gRPC may reuse its buffer
	return nil
}

// connListener remembers the connections it accepted, so that all of them
// can be closed at once under the gRPC server.
type connListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *connListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *connListener) closeAll() int {
	l.mu.Lock()
	conns := l.conns
	l.conns = map[net.Conn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		c.(*trackedConn).Conn.Close()
	}
	return len(conns)
}

// trackedConn leaves its listener's set when gRPC closes it.
type trackedConn struct {
	net.Conn
	l *connListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
