package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// The paths a task is measured on.
const (
	PathService = "service" // through Kafka and the service, produce to result
	PathDirect  = "direct"  // the same work called directly on LND
	PathSerial  = "serial"  // one-at-a-time blocking consumer, same Worker
)

// Report is every figure of one run; it is what -out writes.
type Report struct {
	Started     string                        `json:"started"`
	Machine     Machine                       `json:"machine"`
	N           int                           `json:"n"`
	Concurrency int                           `json:"concurrency"`
	Tasks       map[string]map[string]Summary `json:"tasks"`   // task → path → figures
	Latency     map[string]map[string]Summary `json:"latency"` // task → path → figures at concurrency 1
	Codec       map[string]Codec              `json:"codec"`
	Checks      []Check                       `json:"checks"`
}

// Machine is where and under what load the run happened.
type Machine struct {
	CPUs      int        `json:"cpus"`
	GoVersion string     `json:"go_version"`
	LoadStart [3]float64 `json:"load_avg_start"`
	LoadEnd   [3]float64 `json:"load_avg_end"`
}

// Codec is the in-process verify+parse benchmark of one request kind.
type Codec struct {
	NsPerOp      float64 `json:"ns_per_op"`
	PerSecCore   float64 `json:"per_sec_per_core"`
	AllocsPerOp  int64   `json:"allocs_per_op"`
	BytesPerOp   int64   `json:"bytes_per_op"`
	Iterations   int     `json:"iterations"`
	RequestBytes int     `json:"request_bytes"`
}

// Check is one target of the issue, evaluated on this run's figures.
type Check struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Target float64 `json:"target"`
	Unit   string  `json:"unit"` // "x" (ratio), "/s", "ms", "allocs"
	AtMost bool    `json:"at_most,omitempty"`
	Met    bool    `json:"met"`
	Note   string  `json:"note,omitempty"` // why it could not be evaluated
}

func (r *Report) summary(task, path string) (Summary, bool) {
	s, ok := r.Tasks[task][path]
	return s, ok && s.Errors == 0 && s.PerSec > 0
}

// Evaluate sets r.Checks from the figures present: a target whose figures
// were not measured is left out; one whose figures carry errors is not met.
func (r *Report) Evaluate() {
	r.Checks = nil
	ratio := func(name, task, path, base string, target float64) {
		if _, ok := r.Tasks[task][path]; !ok {
			return
		}
		if _, ok := r.Tasks[task][base]; !ok {
			return
		}
		a, okA := r.summary(task, path)
		b, okB := r.summary(task, base)
		c := Check{Name: name, Target: target, Unit: "x"}
		if okA && okB {
			c.Value = a.PerSec / b.PerSec
			c.Met = c.Value >= target
		} else {
			c.Note = "errors in the measurement"
		}
		r.Checks = append(r.Checks, c)
	}
	ratio("pay: service / direct LND", "pay", PathService, PathDirect, 0.9)
	ratio("pay: service / one-at-a-time", "pay", PathService, PathSerial, 5)
	ratio("create: service / direct LND", "create", PathService, PathDirect, 0.9)
	ratio("decode: service / LND DecodePayReq", "decode", PathService, PathDirect, 2)
	if _, ok := r.Tasks["decode"][PathService]; ok {
		s, ok := r.summary("decode", PathService)
		c := Check{Name: "decode: end to end", Value: s.PerSec, Target: 5000, Unit: "/s", Met: ok && s.PerSec >= 5000}
		if !ok {
			c.Note = "errors in the measurement"
		}
		r.Checks = append(r.Checks, c)
	}
	for _, task := range []string{"decode", "create", "pay"} {
		svc, ok1 := r.Latency[task][PathService]
		dir, ok2 := r.Latency[task][PathDirect]
		if !ok1 || !ok2 {
			continue
		}
		c := Check{Name: task + ": median latency added (C=1)", Value: svc.P50ms - dir.P50ms, Target: 5, Unit: "ms", AtMost: true}
		if svc.Errors > 0 || dir.Errors > 0 || svc.N == 0 || dir.N == 0 {
			c.Note = "errors in the measurement"
		} else {
			c.Met = c.Value <= c.Target
		}
		r.Checks = append(r.Checks, c)
	}
	for _, kind := range []string{"decode", "create"} {
		k, ok := r.Codec[kind]
		if !ok {
			continue
		}
		r.Checks = append(r.Checks,
			Check{Name: "codec " + kind + ": verify+parse per core", Value: k.PerSecCore, Target: 500_000, Unit: "/s", Met: k.PerSecCore >= 500_000},
			Check{Name: "codec " + kind + ": allocations", Value: float64(k.AllocsPerOp), Target: 0, Unit: "allocs/op", AtMost: true, Met: k.AllocsPerOp == 0})
	}
}

var pathNames = map[string]string{
	PathService: "service (Kafka → service → Kafka)",
	PathDirect:  "direct LND",
	PathSerial:  "one-at-a-time consumer",
}

var directRPC = map[string]string{"decode": "DecodePayReq", "create": "AddInvoice", "pay": "SendPaymentV2"}

// WriteTable prints the figures and the targets as plain-text tables.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "%d CPUs, load average %.2f at start, %.2f at end; N=%d, C=%d\n\n",
		r.Machine.CPUs, r.Machine.LoadStart[0], r.Machine.LoadEnd[0], r.N, r.Concurrency)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "task\tpath\tn\tC\treq/s\tp50 ms\tp95 ms\tp99 ms\terrors\t")
	row := func(task, path string, s Summary) {
		name := pathNames[path]
		if path == PathDirect {
			name += " " + directRPC[task]
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%d\t\n", task, name, s.N, s.Concurrency, s.PerSec, s.P50ms, s.P95ms, s.P99ms, s.Errors)
	}
	for _, task := range []string{"decode", "create", "pay"} {
		for _, path := range []string{PathService, PathDirect, PathSerial} {
			if s, ok := r.Tasks[task][path]; ok {
				row(task, path, s)
			}
		}
		for _, path := range []string{PathService, PathDirect} {
			if s, ok := r.Latency[task][path]; ok {
				row(task, path, s)
			}
		}
	}
	tw.Flush()
	if len(r.Codec) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "codec (verify+parse, 1 goroutine)\tns/op\tper s per core\tallocs/op\tB/op\t")
		for _, kind := range []string{"decode", "create"} {
			if k, ok := r.Codec[kind]; ok {
				fmt.Fprintf(tw, "%s request\t%.0f\t%.0f\t%d\t%d\t\n", kind, k.NsPerOp, k.PerSecCore, k.AllocsPerOp, k.BytesPerOp)
			}
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tvalue\tneeded\t")
	for _, c := range r.Checks {
		verdict := "met"
		if !c.Met {
			verdict = "NOT MET"
		}
		if c.Note != "" {
			verdict += " (" + c.Note + ")"
		}
		op := "≥"
		if c.AtMost {
			op = "≤"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\n", c.Name, format(c.Value, c.Unit), op, format(c.Target, c.Unit), verdict)
	}
	tw.Flush()
}

func format(v float64, unit string) string {
	switch unit {
	case "x":
		return fmt.Sprintf("%.2f×", v)
	case "ms":
		return fmt.Sprintf("%.1f ms", v)
	case "/s":
		if math.Abs(v) >= 10_000 {
			return addCommas(int64(math.Round(v))) + "/s"
		}
		return fmt.Sprintf("%.0f/s", v)
	}
	return fmt.Sprintf("%g %s", v, unit)
}

func addCommas(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
