// Package config reads the service's settings from environment variables and
// their equivalent flags (a flag wins), applies the defaults and validates
// them, naming the variable at fault.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is the service's configuration.
type Config struct {
	KafkaBrokers      []string // empty: run the embedded broker
	EmbeddedKafkaAddr string
	InputTopic        string
	OutputTopic       string
	DLQTopic          string
	ConsumerGroup     string
	SessionTimeout    time.Duration
	HMACKey           string
	HMACPreviousKeys  []string
	MaxClockSkew      time.Duration
	PreimageSecret    string
	LNDAddress        string
	LNDTLSCert        string
	LNDMacaroon       string
	Network           string // empty: ask the node
	HTTPAddr          string // empty: no HTTP endpoints
	PayFeeLimitSat    int64
	PayFeeLimitPPM    int64
	PayTimeout        time.Duration
	NodeRetryBudget   time.Duration
	LNDCallTimeout    time.Duration
	Concurrency       int
	ShutdownGrace     time.Duration
	DataDir           string // the SQLite ledger's directory, when DatabaseURL is empty
	DatabaseURL       string // PostgreSQL ledger; empty: SQLite in DataDir
	ClockReference    string // "service" or "broker"
	RecoveryInterval  time.Duration
	PaymentLease      time.Duration
	PayHandOff        time.Duration
	PendingAlert      time.Duration
	LogLevel          string
}

// setting is one variable: its name, default, help, and where it goes.
type setting struct {
	env, def, help string
	set            func(c *Config, v string) error
	secret         bool
}

func (s setting) flagName() string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.env, "LIGHTNING_")), "_", "-")
}

// Settings lists every variable, in the order the README documents them.
var settings = []setting{
	{env: "LIGHTNING_KAFKA_BROKERS", help: "comma-separated Kafka bootstrap brokers; empty runs an embedded broker for local use", set: func(c *Config, v string) error {
		c.KafkaBrokers = splitList(v)
		for _, b := range c.KafkaBrokers {
			if _, _, err := net.SplitHostPort(b); err != nil {
				return fmt.Errorf("broker %q is not host:port", b)
			}
		}
		return nil
	}},
	{env: "LIGHTNING_EMBEDDED_KAFKA_ADDR", def: "127.0.0.1:9092", help: "where the embedded broker listens when LIGHTNING_KAFKA_BROKERS is empty", set: func(c *Config, v string) error {
		c.EmbeddedKafkaAddr = v
		return hostPort(v)
	}},
	{env: "LIGHTNING_INPUT_TOPIC", def: "lightning-service", help: "topic the requests arrive on", set: func(c *Config, v string) error { c.InputTopic = v; return topic(v) }},
	{env: "LIGHTNING_OUTPUT_TOPIC", def: "celery", help: "topic the signed results go to (shared with other services)", set: func(c *Config, v string) error { c.OutputTopic = v; return topic(v) }},
	{env: "LIGHTNING_DLQ_TOPIC", def: "lightning-service-dlq", help: "topic for records that fail authentication or cannot be read", set: func(c *Config, v string) error { c.DLQTopic = v; return topic(v) }},
	{env: "LIGHTNING_CONSUMER_GROUP", def: "lightning-service", help: "Kafka consumer group", set: func(c *Config, v string) error {
		c.ConsumerGroup = v
		return nonEmpty(v)
	}},
	{env: "LIGHTNING_KAFKA_SESSION_TIMEOUT", def: "45s", help: "how long the consumer group waits for an instance that stopped answering (killed, partitioned) before its partitions move to another; 6s to 300s with the broker's defaults", set: func(c *Config, v string) (err error) {
		c.SessionTimeout, err = positiveDuration(v)
		return err
	}},
	{env: "LIGHTNING_HMAC_KEY", help: "shared secret signing requests and results (required)", secret: true, set: func(c *Config, v string) error {
		c.HMACKey = v
		return nonEmpty(v)
	}},
	{env: "LIGHTNING_HMAC_PREVIOUS_KEYS", help: "comma-separated rotated-out keys still accepted on requests", secret: true, set: func(c *Config, v string) error {
		c.HMACPreviousKeys = splitList(v)
		return nil
	}},
	{env: "LIGHTNING_MAX_CLOCK_SKEW", def: "300s", help: "how far a request's timestamp may be from the service clock, either way", set: func(c *Config, v string) (err error) {
		c.MaxClockSkew, err = positiveDuration(v)
		return err
	}},
	{env: "LIGHTNING_CLOCK_REFERENCE", def: "service", help: "what a request's timestamp is compared with: service (the service's clock) or broker (the time the broker appended the record; needs message.timestamp.type=LogAppendTime on the input topic)", set: func(c *Config, v string) error {
		c.ClockReference = v
		switch v {
		case "service", "broker":
			return nil
		}
		return errors.New("must be service or broker")
	}},
	{env: "LIGHTNING_PREIMAGE_SECRET", help: "service-only secret deriving invoice preimages; at least 32 characters, never shared with callers (required)", secret: true, set: func(c *Config, v string) error {
		c.PreimageSecret = v
		if len(v) < 32 {
			return errors.New("must be at least 32 characters")
		}
		return nil
	}},
	{env: "LIGHTNING_LND_ADDRESS", def: "127.0.0.1:10009", help: "LND gRPC host:port", set: func(c *Config, v string) error { c.LNDAddress = v; return hostPort(v) }},
	{env: "LIGHTNING_LND_TLS_CERT", help: "path to LND's tls.cert (required)", set: func(c *Config, v string) error { c.LNDTLSCert = v; return readable(v) }},
	{env: "LIGHTNING_LND_MACAROON", help: "path to the macaroon the service uses (required; see README for a least-privilege one)", set: func(c *Config, v string) error { c.LNDMacaroon = v; return readable(v) }},
	{env: "LIGHTNING_NETWORK", help: "mainnet, testnet, testnet4, signet, regtest or simnet; empty: asked of the node", set: func(c *Config, v string) error {
		c.Network = v
		switch v {
		case "", "mainnet", "testnet", "testnet4", "signet", "regtest", "simnet":
			return nil
		}
		return errors.New("must be one of mainnet, testnet, testnet4, signet, regtest, simnet")
	}},
	{env: "LIGHTNING_HTTP_ADDR", def: "127.0.0.1:8080", help: "where /healthz, /readyz and /metrics listen; empty disables them", set: func(c *Config, v string) error {
		c.HTTPAddr = v
		if v == "" {
			return nil
		}
		return hostPort(v)
	}},
	{env: "LIGHTNING_PAY_FEE_LIMIT_SAT", def: "10", help: "fee limit floor in satoshis: a payment may cost the larger of this and LIGHTNING_PAY_FEE_LIMIT_PPM of its amount", set: func(c *Config, v string) (err error) {
		c.PayFeeLimitSat, err = nonNegative(v)
		return err
	}},
	{env: "LIGHTNING_PAY_FEE_LIMIT_PPM", def: "5000", help: "fee limit as parts per million of the amount (5000 = 0.5%)", set: func(c *Config, v string) (err error) {
		c.PayFeeLimitPPM, err = nonNegative(v)
		return err
	}},
	{env: "LIGHTNING_PAY_TIMEOUT", def: "60s", help: "how long LND may look for a route before a payment fails with timeout", set: func(c *Config, v string) (err error) {
		c.PayTimeout, err = positiveDuration(v)
		if err == nil && c.PayTimeout < time.Second {
			err = errors.New("must be at least 1s")
		}
		return err
	}},
	{env: "LIGHTNING_NODE_RETRY_BUDGET", def: "30s", help: "how long a request keeps retrying an unreachable node before node_unavailable", set: func(c *Config, v string) (err error) {
		c.NodeRetryBudget, err = positiveDuration(v)
		return err
	}},
	{env: "LIGHTNING_LND_CALL_TIMEOUT", def: "15s", help: "deadline of each unary LND call", set: func(c *Config, v string) (err error) {
		c.LNDCallTimeout, err = positiveDuration(v)
		return err
	}},
	{env: "LIGHTNING_CONCURRENCY", def: "64", help: "requests processed at once", set: func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return fmt.Errorf("%q is not a whole number from 1 to 10000", v)
		}
		c.Concurrency = n
		return nil
	}},
	{env: "LIGHTNING_SHUTDOWN_GRACE", def: "30s", help: "how long in-flight work may finish on SIGTERM before it is left for redelivery", set: func(c *Config, v string) (err error) {
		c.ShutdownGrace, err = positiveDuration(v)
		return err
	}},
	{env: "LIGHTNING_DATA_DIR", def: "data", help: "directory of the request ledger (SQLite) when LIGHTNING_DATABASE_URL is empty; created if missing", set: func(c *Config, v string) error {
		c.DataDir = v
		if strings.TrimSpace(v) == "" {
			return errors.New("must not be empty")
		}
		if fi, err := os.Stat(v); err == nil && !fi.IsDir() {
			return errors.New("is not a directory")
		}
		return nil
	}},
	{env: "LIGHTNING_DATABASE_URL", help: "PostgreSQL URL of the request ledger (postgres://user:password@host:5432/db), shared by every instance of the group; empty: SQLite in LIGHTNING_DATA_DIR", secret: true, set: func(c *Config, v string) error {
		c.DatabaseURL = v
		if v == "" {
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			return errors.New("is not a postgres:// URL with a host")
		}
		return nil
	}},
	{env: "LIGHTNING_RECOVERY_INTERVAL", def: "5s", help: "how often pay requests whose owner stopped (a crash, another instance gone) are looked for and taken over", set: func(c *Config, v string) (err error) {
		c.RecoveryInterval, err = positiveDuration(v)
		return err
	}},
	{env: "LIGHTNING_PAYMENT_LEASE", def: "30s", help: "how long an instance owns a pay request without renewing its lease; then another may take it over. Longer than any pause of a live instance and than the instances' clock skew", set: func(c *Config, v string) (err error) {
		c.PaymentLease, err = positiveDuration(v)
		if err == nil && c.PaymentLease < time.Second {
			err = errors.New("must be at least 1s")
		}
		return err
	}},
	{env: "LIGHTNING_PAY_HANDOFF", def: "10s", help: "how long a worker waits for a payment's outcome; a payment still in flight then is answered by its owner when it ends, and the worker moves on", set: func(c *Config, v string) (err error) {
		c.PayHandOff, err = positiveDuration(v)
		return err
	}},
	{env: "LIGHTNING_PENDING_ALERT", def: "10m", help: "a request unfinished for longer than this is logged and counted in lightning_ledger_overdue_requests", set: func(c *Config, v string) (err error) {
		c.PendingAlert, err = positiveDuration(v)
		return err
	}},
	{env: "LIGHTNING_LOG_LEVEL", def: "info", help: "debug, info, warn or error", set: func(c *Config, v string) error {
		c.LogLevel = v
		switch v {
		case "debug", "info", "warn", "error":
			return nil
		}
		return errors.New("must be debug, info, warn or error")
	}},
}

// Load reads the configuration from args (flags) and the environment
// (lookupEnv, as os.LookupEnv), validating everything and reporting every
// problem at once. A variable set to the empty string counts as set.
func Load(args []string, lookupEnv func(string) (string, bool)) (*Config, error) {
	fs := flag.NewFlagSet("lightning-service", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), Usage()) }
	flags := make(map[string]*string, len(settings))
	for _, s := range settings {
		flags[s.env] = fs.String(s.flagName(), "", s.help)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	c := &Config{}
	var errs []error
	for _, s := range settings {
		v, ok := lookupEnv(s.env)
		if given[s.flagName()] {
			v, ok = *flags[s.env], true
		} else if !ok {
			v, ok = s.def, s.def != "" || !required(s.env)
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s (--%s) is required: %s", s.env, s.flagName(), strings.TrimSuffix(s.help, " (required)")))
			continue
		}
		if err := s.set(c, v); err != nil {
			shown := strconv.Quote(v)
			if s.secret {
				shown = "(value hidden)"
			}
			errs = append(errs, fmt.Errorf("%s (--%s) %s: %w", s.env, s.flagName(), shown, err))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, c.crossCheck()...)
	}
	return c, errors.Join(errs...)
}

func required(env string) bool {
	switch env {
	case "LIGHTNING_HMAC_KEY", "LIGHTNING_PREIMAGE_SECRET", "LIGHTNING_LND_TLS_CERT", "LIGHTNING_LND_MACAROON":
		return true
	}
	return false
}

func (c *Config) crossCheck() []error {
	var errs []error
	if c.PreimageSecret == c.HMACKey {
		errs = append(errs, errors.New("LIGHTNING_PREIMAGE_SECRET must differ from LIGHTNING_HMAC_KEY: callers know the HMAC key, and anyone knowing the preimage secret can claim the service's invoices' preimages"))
	}
	for _, k := range c.HMACPreviousKeys {
		if k == c.PreimageSecret {
			errs = append(errs, errors.New("LIGHTNING_PREIMAGE_SECRET must differ from every key in LIGHTNING_HMAC_PREVIOUS_KEYS"))
		}
	}
	if c.InputTopic == c.OutputTopic || c.InputTopic == c.DLQTopic {
		errs = append(errs, errors.New("LIGHTNING_INPUT_TOPIC must differ from LIGHTNING_OUTPUT_TOPIC and LIGHTNING_DLQ_TOPIC, or the service would consume its own answers"))
	}
	return errs
}

// MinHMACKeyBytes is the shortest HMAC key not warned about: HMAC-SHA256's
// own output size, below which a key is easier to guess than the MAC.
const MinHMACKeyBytes = 32

// Warnings are what the configuration allows but should not: an HMAC key
// shorter than MinHMACKeyBytes. Each names its variable, never a key.
func (c *Config) Warnings() []string {
	var w []string
	if len(c.HMACKey) < MinHMACKeyBytes {
		w = append(w, fmt.Sprintf("LIGHTNING_HMAC_KEY is shorter than %d bytes: a short key is easier to guess; use %d random bytes or more", MinHMACKeyBytes, MinHMACKeyBytes))
	}
	var short []string
	for i, k := range c.HMACPreviousKeys {
		if len(k) < MinHMACKeyBytes {
			short = append(short, strconv.Itoa(i+1))
		}
	}
	if len(short) > 0 {
		which := "key " + short[0] + " is"
		if n := len(short); n > 1 {
			which = "keys " + strings.Join(short[:n-1], ", ") + " and " + short[n-1] + " are"
		}
		w = append(w, fmt.Sprintf("LIGHTNING_HMAC_PREVIOUS_KEYS: %s (of %d) shorter than %d bytes: a short key is easier to guess; retire it once callers have moved on",
			which, len(c.HMACPreviousKeys), MinHMACKeyBytes))
	}
	return w
}

// Usage lists every variable with its flag, default and meaning.
func Usage() string {
	var b strings.Builder
	b.WriteString("lightning-service: settings (environment variable / flag; a flag wins)\n\n")
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(&b, "  %s / --%s  [default %s]\n      %s\n", s.env, s.flagName(), def, s.help)
	}
	return b.String()
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func hostPort(v string) error {
	if _, _, err := net.SplitHostPort(v); err != nil {
		return errors.New("is not host:port")
	}
	return nil
}

func topic(v string) error {
	if v == "" || len(v) > 249 || strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return errors.New("is not a valid Kafka topic name (letters, digits, '.', '_', '-'; 1 to 249 characters)")
	}
	return nil
}

func nonEmpty(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("must not be empty")
	}
	return nil
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot be read: %w", err)
	}
	return f.Close()
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New("is not a positive Go duration (e.g. 300s, 5m)")
	}
	return d, nil
}

func nonNegative(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("is not a whole number >= 0")
	}
	return n, nil
}
