// Package lnd adapts LND's gRPC API (lnrpc, routerrpc) to lightning.Node.
package lnd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/invoicesrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"lightning-service/internal/lightning"
)

// DefaultCallTimeout is the deadline of a unary call when Config has none.
const DefaultCallTimeout = 30 * time.Second

// maxRecvMsgSize is what lncli and lndclient allow: a payment with many
// attempts, each carrying its route, outgrows gRPC's default of 4 MiB.
const maxRecvMsgSize = 200 << 20

// Config says how to reach an LND node.
type Config struct {
	Address      string        // host:port of LND's gRPC interface (rpclisten)
	TLSCertPath  string        // LND's tls.cert; the address must match one of its names
	MacaroonPath string        // a macaroon allowed to read info, add and read invoices, and pay
	CallTimeout  time.Duration // deadline of each unary call; 0 means DefaultCallTimeout
}

// Client is a lightning.Node backed by LND. It holds one connection, which
// gRPC re-establishes by itself whenever LND comes back.
type Client struct {
	conn    *grpc.ClientConn
	ln      lnrpc.LightningClient
	router  routerrpc.RouterClient
	timeout time.Duration
}

var _ lightning.Node = (*Client)(nil)

// reconnectBackoff paces the attempts to reach a node that is down.
var reconnectBackoff = backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}

// Dial prepares a client for the node at cfg.Address. It reads the
// certificate and macaroon but does not wait for the node: the service must
// start, and keep consuming, while LND is down; calls fail with
// lightning.ErrUnavailable until it is up.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("lnd: the address is empty")
	}
	tlsCreds, err := credentials.NewClientTLSFromFile(cfg.TLSCertPath, "")
	if err != nil {
		return nil, fmt.Errorf("lnd TLS certificate %q: %w", cfg.TLSCertPath, err)
	}
	mac, err := loadMacaroon(cfg.MacaroonPath)
	if err != nil {
		return nil, err
	}
	timeout := cfg.CallTimeout
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	// Without grpc.WithBlock, DialContext returns at once and connects in
	// the background.
	conn, err := grpc.DialContext(ctx, cfg.Address,
		grpc.WithTransportCredentials(tlsCreds),
		grpc.WithPerRPCCredentials(mac),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
		// Pings find a dead connection under a long payment stream. LND
		// accepts pings every 5 s or more, and only during calls.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
		// While LND is down, gRPC retries the connection with a growing
		// backoff, 2 minutes at most by default; calls fail at once
		// meanwhile. A node back after a restart must be found within a
		// task's retry budget, so retries stay frequent.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnectBackoff, MinConnectTimeout: 5 * time.Second}),
	)
	if err != nil {
		return nil, fmt.Errorf("lnd %s: %w", cfg.Address, err)
	}
	return &Client{
		conn:    conn,
		ln:      lnrpc.NewLightningClient(conn),
		router:  routerrpc.NewRouterClient(streamConn{conn}),
		timeout: timeout,
	}, nil
}

// Close closes the connection; calls in progress fail.
func (c *Client) Close() error { return c.conn.Close() }

// callCtx gives one unary call its deadline.
func (c *Client) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// Info returns the node's identity and network (GetInfo).
func (c *Client) Info(ctx context.Context) (lightning.Info, error) {
	callCtx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.ln.GetInfo(callCtx, &lnrpc.GetInfoRequest{})
	if err != nil {
		return lightning.Info{}, unaryError(ctx, "GetInfo", err)
	}
	return infoFromRPC(resp)
}

// AddInvoice creates an invoice for p.Preimage. LND refuses a second invoice
// for the same hash, which makes retrying after a lost answer safe.
func (c *Client) AddInvoice(ctx context.Context, p lightning.InvoiceParams) (lightning.Invoice, error) {
	req := &lnrpc.Invoice{
		RPreimage: p.Preimage[:],
		Value:     p.ValueSat,
		Memo:      p.Memo,
		Expiry:    ceilSeconds(p.Expiry),
	}
	callCtx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.ln.AddInvoice(callCtx, req)
	if err != nil {
		return lightning.Invoice{}, addInvoiceError(ctx, err)
	}
	hash, err := hashFromBytes(resp.GetRHash())
	if err != nil {
		return lightning.Invoice{}, fmt.Errorf("lnd AddInvoice r_hash: %w", err)
	}
	expiry := time.Duration(req.Expiry) * time.Second
	if expiry <= 0 {
		expiry = invoicesrpc.DefaultInvoiceExpiry // what LND encodes then
	}
	return lightning.Invoice{
		PaymentRequest: resp.GetPaymentRequest(),
		Hash:           hash,
		ValueSat:       p.ValueSat,
		Memo:           p.Memo,
		Expiry:         expiry,
		State:          lightning.InvoiceOpen,
	}, nil
}

// LookupInvoice returns the node's invoice with hash.
func (c *Client) LookupInvoice(ctx context.Context, hash lightning.Hash) (lightning.Invoice, error) {
	callCtx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.ln.LookupInvoice(callCtx, &lnrpc.PaymentHash{RHash: hash[:]})
	if err != nil {
		return lightning.Invoice{}, lookupInvoiceError(ctx, hash, err)
	}
	return invoiceFromRPC(resp)
}

// SendPayment pays p.PaymentRequest (SendPaymentV2) and follows the payment
// until it is final. The payment is not tied to this call: if ctx ends
// first, LND carries on, and TrackPayment finds out how it ended.
func (c *Client) SendPayment(ctx context.Context, p lightning.PaymentParams) (lightning.Payment, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream once the payment is final
	stream, err := c.router.SendPaymentV2(ctx, &routerrpc.SendPaymentRequest{
		PaymentRequest: p.PaymentRequest,
		FeeLimitSat:    p.FeeLimitSat,
		TimeoutSeconds: paymentTimeout(p.Timeout),
		// The first update proves the payment started: an error after
		// it can no longer mean "not sent".
		NoInflightUpdates: false,
	})
	if err != nil {
		return lightning.Payment{}, streamError(ctx, "SendPaymentV2", err, 0)
	}
	return follow(ctx, "SendPaymentV2", stream)
}

// TrackPayment follows the payment with hash (TrackPaymentV2) until it is
// final.
func (c *Client) TrackPayment(ctx context.Context, hash lightning.Hash) (lightning.Payment, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.router.TrackPaymentV2(ctx, &routerrpc.TrackPaymentRequest{
		PaymentHash:       hash[:],
		NoInflightUpdates: false,
	})
	if err != nil {
		return lightning.Payment{}, streamError(ctx, "TrackPaymentV2", err, 0)
	}
	return follow(ctx, "TrackPaymentV2", stream)
}

type paymentStream interface {
	Recv() (*lnrpc.Payment, error)
}

// follow reads payment updates until one is final. LND sends the payment's
// current state first, then each change, and ends the stream after the
// final one.
func follow(ctx context.Context, rpc string, stream paymentStream) (lightning.Payment, error) {
	for updates := 0; ; updates++ {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return lightning.Payment{}, fmt.Errorf("%w: lnd %s: the stream ended before the payment was final",
				lightning.ErrOutcomeUnknown, rpc)
		}
		if err != nil {
			return lightning.Payment{}, streamError(ctx, rpc, err, updates)
		}
		p, err := paymentFromRPC(msg)
		if err != nil {
			return lightning.Payment{}, fmt.Errorf("%w: %s: %v", lightning.ErrOutcomeUnknown, rpc, err)
		}
		if p.Status != lightning.PaymentInFlight {
			return p, nil
		}
	}
}

// paymentTimeout is d in whole seconds for SendPaymentV2, rounded up and at
// least 1: LND reads 0 as its default of 60 s.
func paymentTimeout(d time.Duration) int32 {
	return int32(min(max(ceilSeconds(d), 1), math.MaxInt32))
}

// ceilSeconds rounds d up to whole seconds: rounding down could turn a short
// limit into 0, which LND reads as "use the default".
func ceilSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return s
}
