package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/proc"
)

// Options configure Start. The zero value is a broker in a fresh temporary
// directory, with jars from Fetch.
type Options struct {
	// LibDir holds the broker's jars; empty means Start calls Fetch.
	LibDir string
	// DataDir is where config, logs and the log segments live; it must not
	// hold a formatted broker already, and is left in place after Stop.
	// Empty means a new temporary directory, which Stop removes.
	DataDir string
	// KeepData keeps the temporary data directory after Stop, to read its
	// broker.log.
	KeepData bool
	// Partitions is num.partitions, the default for CreateTopics(ctx, -1, …);
	// 0 means 4.
	Partitions int
	// Config overrides or adds server.properties entries.
	Config map[string]string
	// JVMArgs come after the default heap and GC flags, so they win.
	JVMArgs []string
	// Log receives progress lines; nil discards them. The broker's own log
	// goes to broker.log in DataDir.
	Log io.Writer
	// StartTimeout bounds each wait for the broker to answer; 0 means 2 min.
	StartTimeout time.Duration
	// StopGrace is how long Stop and Restart wait after SIGTERM before
	// SIGKILL; 0 means 20 s.
	StopGrace time.Duration
}

// Broker is a running single-node KRaft broker on 127.0.0.1.
type Broker struct {
	opts           Options
	dataDir        string
	tempData       bool // dataDir is ours to remove
	brokerPort     int
	controllerPort int

	mu      sync.Mutex
	process *proc.Process // nil while killed or stopped
	stopped bool
}

// Start formats a new data directory and starts a broker in it, returning
// once the broker answers metadata requests. ctx bounds the start only; the
// broker runs until Stop or Kill.
func Start(ctx context.Context, opts Options) (*Broker, error) {
	began := time.Now()
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Partitions <= 0 {
		opts.Partitions = 4
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 20 * time.Second
	}
	if opts.LibDir == "" {
		dir, err := Fetch(ctx, opts.Log)
		if err != nil {
			return nil, err
		}
		opts.LibDir = dir
	}
	if _, err := exec.LookPath("java"); err != nil {
		return nil, fmt.Errorf("kafkatest: the broker needs java (17+) on PATH: %w", err)
	}

	b := &Broker{opts: opts, dataDir: opts.DataDir}
	if b.dataDir == "" {
		dir, err := os.MkdirTemp("", "kafkatest-")
		if err != nil {
			return nil, fmt.Errorf("kafkatest: %w", err)
		}
		b.dataDir, b.tempData = dir, true
	} else if err := os.MkdirAll(b.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("kafkatest: data dir %s: %w", b.dataDir, err)
	}
	if _, err := os.Stat(filepath.Join(b.kraftDir(), "meta.properties")); err == nil {
		return nil, fmt.Errorf("kafkatest: data dir %s already holds a formatted broker; Start needs a fresh one (Restart reuses data)", b.dataDir)
	}

	ok := false
	defer func() {
		if !ok {
			b.Stop()
		}
	}()
	ports, err := proc.FreePorts(2)
	if err != nil {
		return nil, fmt.Errorf("kafkatest: %w", err)
	}
	b.brokerPort, b.controllerPort = ports[0], ports[1]
	if err := b.writeConfig(); err != nil {
		return nil, err
	}
	formatted := time.Now()
	if err := b.format(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Log, "kafkatest: formatted %s in %s\n", b.dataDir, time.Since(formatted).Round(time.Millisecond))
	if err := b.launch(ctx); err != nil {
		return nil, err
	}
	ok = true
	fmt.Fprintf(opts.Log, "kafkatest: Kafka %s up at %s in %s\n", Version, b.Addr(), time.Since(began).Round(time.Millisecond))
	return b, nil
}

// Addr is the broker's PLAINTEXT listener, host:port, for kgo.SeedBrokers.
func (b *Broker) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.brokerPort))
}

// DataDir is where server.properties, broker.log and the log segments are.
func (b *Broker) DataDir() string { return b.dataDir }

// Stop shuts the broker down (SIGTERM, then SIGKILL after the grace) and
// removes its temporary data directory unless Options.KeepData. Later calls
// do nothing.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.stopped = true
	b.terminate()
	if b.tempData && !b.opts.KeepData {
		os.RemoveAll(b.dataDir)
	}
}

// Kill ends the broker with SIGKILL, as a crash would, keeping its data;
// Restart brings it back.
func (b *Broker) Kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.process; p != nil {
		p.Kill()
		b.process = nil
	}
}

// Restart stops the broker gracefully if it runs and starts it again on the
// same ports and data, returning once it answers: clients see their broker
// go away and come back at the same address, as in a real outage.
func (b *Broker) Restart(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return errors.New("kafkatest: Restart after Stop")
	}
	began := time.Now()
	b.terminate()
	stopped := time.Now()
	if err := b.launch(ctx); err != nil {
		return err
	}
	fmt.Fprintf(b.opts.Log, "kafkatest: restarted at %s in %s (stopping took %s)\n", b.Addr(),
		time.Since(began).Round(time.Millisecond), stopped.Sub(began).Round(time.Millisecond))
	return nil
}

// CreateTopics creates topics with replication factor 1 (partitions -1 means
// num.partitions) and waits until every partition has a leader, so a
// producer's first record does not race the topic's creation.
func (b *Broker) CreateTopics(ctx context.Context, partitions int32, names ...string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		return fmt.Errorf("kafkatest: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopics(ctx, partitions, 1, nil, names...)
	if err != nil {
		return fmt.Errorf("kafkatest: creating topics %v: %w", names, err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil {
			return fmt.Errorf("kafkatest: creating topic %q: %w %s", r.Topic, r.Err, r.ErrMessage)
		}
	}
	for {
		md, err := adm.Metadata(ctx, names...)
		if err == nil && allLed(md, names) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkatest: topics %v have no leaders yet: %w", names, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func allLed(md kadm.Metadata, names []string) bool {
	for _, name := range names {
		t, ok := md.Topics[name]
		if !ok || t.Err != nil || len(t.Partitions) == 0 {
			return false
		}
		for _, p := range t.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
	}
	return true
}

func (b *Broker) kraftDir() string      { return filepath.Join(b.dataDir, "kraft") }
func (b *Broker) propsPath() string     { return filepath.Join(b.dataDir, "server.properties") }
func (b *Broker) log4jPath() string     { return filepath.Join(b.dataDir, "log4j2.xml") }
func (b *Broker) logPath() string       { return filepath.Join(b.dataDir, "broker.log") }
func (b *Broker) formatLogPath() string { return filepath.Join(b.dataDir, "format.log") }
func (b *Broker) consolePath() string   { return filepath.Join(b.dataDir, "console.log") }

func (b *Broker) writeConfig() error {
	cport := strconv.Itoa(b.controllerPort)
	props := map[string]string{
		"process.roles":                                    "broker,controller",
		"node.id":                                          "1",
		"listeners":                                        "PLAINTEXT://" + b.Addr() + ",CONTROLLER://127.0.0.1:" + cport,
		"advertised.listeners":                             "PLAINTEXT://" + b.Addr(),
		"listener.security.protocol.map":                   "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"inter.broker.listener.name":                       "PLAINTEXT",
		"controller.listener.names":                        "CONTROLLER",
		"controller.quorum.bootstrap.servers":              "127.0.0.1:" + cport,
		"log.dirs":                                         b.kraftDir(),
		"num.partitions":                                   strconv.Itoa(b.opts.Partitions),
		"default.replication.factor":                       "1",
		"min.insync.replicas":                              "1",
		"offsets.topic.replication.factor":                 "1",
		"transaction.state.log.replication.factor":         "1",
		"transaction.state.log.min.isr":                    "1",
		"share.coordinator.state.topic.replication.factor": "1",
		"share.coordinator.state.topic.min.isr":            "1",
		// One node gains nothing from the default 50 partitions, and each is
		// a log to load after every chaos restart.
		"offsets.topic.num.partitions":         "4",
		"transaction.state.log.num.partitions": "4",
		// After a crash the controller holds the new incarnation back until
		// the old one's session expires: 9 s by default, most of a restart.
		"broker.session.timeout.ms":    "3000",
		"broker.heartbeat.interval.ms": "500",
		// A consumer group starts at once instead of waiting 3 s for peers.
		"group.initial.rebalance.delay.ms": "0",
		// Off, as in production: a misspelt topic must fail loudly rather
		// than be created with default settings on first use.
		"auto.create.topics.enable": "false",
	}
	maps.Copy(props, b.opts.Config)
	var sb strings.Builder
	for _, k := range slices.Sorted(maps.Keys(props)) {
		fmt.Fprintf(&sb, "%s=%s\n", k, props[k])
	}
	if err := os.WriteFile(b.propsPath(), []byte(sb.String()), 0o644); err != nil {
		return fmt.Errorf("kafkatest: %w", err)
	}
	if err := os.WriteFile(b.log4jPath(), []byte(log4jXML), 0o644); err != nil {
		return fmt.Errorf("kafkatest: %w", err)
	}
	return nil
}

// log4jXML sends everything to the file named by -Dkafkatest.log in the data
// dir (broker.log, format.log): tests read the console, and a broker's
// chatter there would bury their output. Without the shutdown hook log4j
// stops warning on every SIGTERM; the file appender flushes each line anyway.
const log4jXML = `<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <File name="file" fileName="${sys:kafkatest.log}">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="warn"/>
    <Root level="info"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
`

// javaArgs is a java command line: flags, then what every run needs, then
// the main class and its arguments.
func (b *Broker) javaArgs(flags []string, logFile, main string, args ...string) []string {
	return slices.Concat(flags, []string{
		"-Dlog4j2.configurationFile=" + b.log4jPath(),
		"-Dkafkatest.log=" + logFile,
		"-Djava.awt.headless=true",
		"-cp", filepath.Join(b.opts.LibDir, "*"),
		main,
	}, args)
}

func (b *Broker) format(ctx context.Context) error {
	// The tool runs for a second or two: C1 alone starts it faster.
	flags := []string{"-Xmx256m", "-XX:TieredStopAtLevel=1"}
	if path, err := archivePath(b.opts.LibDir); err == nil {
		if _, err := os.Stat(path); err == nil {
			flags = append(flags, "-XX:SharedArchiveFile="+path, "-Xlog:cds*=off")
		}
	}
	args := b.javaArgs(flags,
		b.formatLogPath(), "kafka.tools.StorageTool", "format", "--standalone", "-t", newClusterID(), "-c", b.propsPath())
	out, err := exec.CommandContext(ctx, "java", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kafkatest: formatting %s: %w\n%s%s", b.kraftDir(), err, out, tailOf(b.formatLogPath(), proc.TailFile(b.formatLogPath(), 30)))
	}
	return nil
}

// launch starts the JVM and waits until the broker answers. The caller holds
// mu or owns b exclusively.
func (b *Broker) launch(ctx context.Context) error {
	// No GC is named, so JVMArgs may choose one; on two or more cores the
	// JVM picks G1, as Kafka's own scripts do.
	cds, exited := b.classArchive()
	flags := slices.Concat([]string{"-Xms128m", "-Xmx512m", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError"}, cds, b.opts.JVMArgs)
	// proc gives the JVM its own process group, so a Ctrl-C reaches only the
	// harness, which stops it; and has the kernel kill it with the test binary
	// (a panic, go test's timeout) rather than leave an orphan holding the ports.
	p, err := proc.Start(proc.Command{
		Name: "broker", Path: "java", Args: b.javaArgs(flags, b.logPath(), "kafka.Kafka", b.propsPath()),
		Dir: b.dataDir, LogPath: b.consolePath(), OnExit: exited,
	})
	if err != nil {
		exited(nil)
		return fmt.Errorf("kafkatest: %w", err)
	}
	b.process = p
	if err := b.waitReady(ctx, p); err != nil {
		b.terminate()
		return err
	}
	return nil
}

// waitReady polls metadata until the broker lists itself, which in KRaft
// means it has caught up with the metadata log and is unfenced.
func (b *Broker) waitReady(ctx context.Context, p *proc.Process) error {
	ctx, cancel := context.WithTimeout(ctx, b.opts.StartTimeout)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DialTimeout(time.Second))
	if err != nil {
		return fmt.Errorf("kafkatest: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		md, err := adm.BrokerMetadata(attempt)
		cancelAttempt()
		if err == nil && len(md.Brokers) > 0 && md.Controller >= 0 {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("kafkatest: broker exited while starting (%v)%s", p.Err(), b.logTail(p))
		case <-ctx.Done():
			return fmt.Errorf("kafkatest: broker at %s did not answer: %w (last: %v)%s", b.Addr(), ctx.Err(), err, b.logTail(p))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// terminate sends SIGTERM, waits out the grace, then SIGKILLs; only this
// broker's own PID is ever signalled. The caller holds mu.
func (b *Broker) terminate() {
	p := b.process
	if p == nil {
		return
	}
	b.process = nil
	if err := p.Stop(context.Background(), b.opts.StopGrace); err != nil {
		fmt.Fprintf(b.opts.Log, "kafkatest: %v\n", err)
	}
}

// logTail is the end of the broker's console (where the JVM's own errors
// go) and log, for error messages.
func (b *Broker) logTail(p *proc.Process) string {
	return tailOf(p.LogPath(), p.Tail(30)) + tailOf(b.logPath(), proc.TailFile(b.logPath(), 30))
}

// tailOf heads a log's last lines with its name; an empty tail says nothing.
func tailOf(path, lines string) string {
	if strings.TrimSpace(lines) == "" {
		return ""
	}
	return fmt.Sprintf("\n--- tail of %s ---\n%s", path, lines)
}

// newClusterID makes a Kafka Uuid in its base64url form. Like Kafka's own
// generator it avoids a leading '-', which the format tool would take for a
// flag.
func newClusterID() string {
	for {
		var id [16]byte
		rand.Read(id[:])
		s := base64.RawURLEncoding.EncodeToString(id[:])
		if s[0] != '-' {
			return s
		}
	}
}
