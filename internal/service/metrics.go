package service

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the service's Prometheus metrics.
type Metrics struct {
	Requests    *prometheus.CounterVec
	Duration    *prometheus.HistogramVec
	DeadLetters *prometheus.CounterVec
	InFlight    prometheus.Gauge
	Abandoned   prometheus.Counter
	Republished *prometheus.CounterVec
	Recovered   prometheus.Counter
	Unfinished  prometheus.Gauge
	Overdue     prometheus.Gauge

	mu       sync.Mutex
	payments func() (n int, oldest time.Duration)
}

// WatchPayments makes inFlight the source of the payments-in-flight gauges:
// how many payments this instance runs now, and the age of the oldest.
func (m *Metrics) WatchPayments(inFlight func() (n int, oldest time.Duration)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.payments = inFlight
}

func (m *Metrics) paymentsNow() (int, time.Duration) {
	m.mu.Lock()
	f := m.payments
	m.mu.Unlock()
	if f == nil {
		return 0, 0
	}
	return f()
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lightning_requests_total",
			Help: "Authenticated requests answered, by task and result status.",
		}, []string{"task", "status"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lightning_request_duration_seconds",
			Help:    "Time from reading a request to its sealed result, by task.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"task"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lightning_dead_letters_total",
			Help: "Records sent to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lightning_requests_in_flight",
			Help: "Records being processed now.",
		}),
		Abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lightning_requests_abandoned_total",
			Help: "Records whose work was stopped (shutdown, partition revoked) before a result; they are redelivered.",
		}),
	}
	m.Republished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lightning_results_republished_total",
		Help: "Requests the ledger had answered already (redelivered or replayed) whose stored result was published again, by task.",
	}, []string{"task"})
	m.Recovered = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lightning_recovered_payments_total",
		Help: "Pay results the payment owner published itself: no worker was waiting for them (a payment in flight past the hand-off, a request taken over from an owner that stopped).",
	})
	m.Unfinished = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lightning_ledger_unfinished_requests",
		Help: "Requests in the ledger not yet answered, or whose payment is not yet final, at recovery's last pass.",
	})
	m.Overdue = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lightning_ledger_overdue_requests",
		Help: "Unfinished requests older than LIGHTNING_PENDING_ALERT at recovery's last pass; each is logged.",
	})
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lightning_payments_in_flight",
		Help: "Payments this instance owns and runs now, whether or not a worker waits for them.",
	}, func() float64 { n, _ := m.paymentsNow(); return float64(n) })
	oldest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "lightning_payment_oldest_in_flight_seconds",
		Help: "Age of the oldest payment this instance runs now; past LIGHTNING_PENDING_ALERT each is also logged.",
	}, func() float64 { _, d := m.paymentsNow(); return d.Seconds() })
	reg.MustRegister(m.Requests, m.Duration, m.DeadLetters, m.InFlight, m.Abandoned, m.Republished, m.Recovered, m.Unfinished, m.Overdue,
		inFlight, oldest)
	return m
}
