package main

import (
	"context"
	"log/slog"

	"lightning-service/internal/app"
	"lightning-service/internal/config"
)

func serve(ctx context.Context, args []string, lookupEnv func(string) (string, bool)) error {
	cfg, err := config.Load(args, lookupEnv)
	if err != nil {
		return err
	}
	log := app.NewLogger(cfg.LogLevel)
	slog.SetDefault(log)
	return app.Run(ctx, cfg, log, nil)
}
