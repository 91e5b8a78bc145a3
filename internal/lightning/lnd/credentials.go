package lnd

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"gopkg.in/macaroon.v2"
)

// macaroonCredential sends a macaroon with every call, in the "macaroon"
// metadata as hex, as lncli and lndclient do. Printing it shows no secret.
type macaroonCredential struct{ hex string }

var _ credentials.PerRPCCredentials = macaroonCredential{}

// loadMacaroon reads a macaroon file. Parsing it makes a wrong file (a
// certificate, an empty file) fail at start rather than on the first call.
func loadMacaroon(path string) (macaroonCredential, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return macaroonCredential{}, fmt.Errorf("lnd macaroon: %w", err)
	}
	var mac macaroon.Macaroon
	if err := mac.UnmarshalBinary(data); err != nil {
		return macaroonCredential{}, fmt.Errorf("lnd macaroon %s: not a macaroon: %w", path, err)
	}
	// Re-encoding is what LND's own client does (macaroons.MacaroonCredential).
	raw, err := mac.MarshalBinary()
	if err != nil {
		return macaroonCredential{}, fmt.Errorf("lnd macaroon %s: %w", path, err)
	}
	return macaroonCredential{hex: hex.EncodeToString(raw)}, nil
}

func (m macaroonCredential) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"macaroon": m.hex}, nil
}

// RequireTransportSecurity keeps the macaroon off unencrypted connections.
func (macaroonCredential) RequireTransportSecurity() bool { return true }

func (macaroonCredential) String() string   { return "macaroon(redacted)" }
func (macaroonCredential) GoString() string { return "macaroon(redacted)" }
