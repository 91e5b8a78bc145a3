package app

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"lightning-service/internal/kafka"
	"lightning-service/internal/lightning"
)

// httpHandler serves /healthz (the process answers), /readyz (the broker and
// the node answer) and /metrics.
func httpHandler(reg *prometheus.Registry, consumer *kafka.Consumer, node lightning.Node) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		checks := map[string]string{"broker": "ok", "node": "ok"}
		ready := true
		if err := consumer.Client().Ping(ctx); err != nil {
			checks["broker"], ready = err.Error(), false
		}
		if _, err := node.Info(ctx); err != nil {
			checks["node"], ready = err.Error(), false
		}
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(checks)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
