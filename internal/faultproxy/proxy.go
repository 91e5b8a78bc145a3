// Package faultproxy is a gRPC proxy for end-to-end tests, placed between the
// service and a real LND. It passes every call through unchanged.
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

// Proxy is a running proxy.
type Proxy struct {
	lis  net.Listener
	srv  *grpc.Server
	conn *grpc.ClientConn // to the target, shared by all calls

	served chan struct{} // closed when Serve returns
	stop   func() bool   // stops closing on the end of Start's ctx
	closed sync.Once
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
		lis:    l,
		conn:   conn,
		served: make(chan struct{}),
	}
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

// Close stops the proxy: client connections close and calls in progress end.
func (p *Proxy) Close() error {
	p.closed.Do(func() {
		p.stop()
		p.srv.Stop()
		<-p.served
		p.conn.Close()
	})
	return nil
}

// handle serves every call: the proxy registers no service, so gRPC hands
// each call to it with the method's name and the messages as raw bytes.
func (p *Proxy) handle(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	return p.forward(ss, method)
}

// anyStream serves unary and streaming calls alike: a unary call is a stream
// of one message each way.
var anyStream = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// forward makes the client's call on the target with the client's metadata
// (the macaroon) and deadline, relays messages both ways, and returns the
// target's status and trailers.
func (p *Proxy) forward(ss grpc.ServerStream, method string) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ss.Context(), md))
	defer cancel()
	up, err := p.conn.NewStream(ctx, anyStream, method)
	if err != nil {
		return err // already a status: Unavailable while the target is down
	}
	go forwardRequests(ss, up, cancel)

	header, err := up.Header()
	if err != nil {
		return err
	}
	if header != nil { // nil when the target answered with a status alone
		if err := ss.SendHeader(header); err != nil {
			return err
		}
	}
	for {
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
