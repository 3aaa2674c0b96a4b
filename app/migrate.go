package main

import (
	"context"
	"fmt"
	"io"

	"github.com/orderflow/orders-service/migrations"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
)

func cmdMigrate(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	cfg, rest, err := loadConfig("migrate", args, environ, stderr, nil)
	if err != nil {
		return err
	}
	if err := cfg.RequireDSN(); err != nil {
		return err
	}
	action := "up"
	if len(rest) > 0 {
		action = rest[0]
	}
	if action != "up" && action != "down" && action != "status" {
		return usageError{fmt.Errorf("migrate: unknown action %q (want up, down or status)", action)}
	}
	db, err := ordersdb.OpenForMigrations(ctx, cfg.Postgres.DSN)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer db.Close()
	switch action {
	case "up":
		if err := migrations.Up(ctx, db); err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
	case "down":
		if err := migrations.Down(ctx, db); err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
	}
	st, err := migrations.Status(ctx, db)
	if err != nil {
		return fmt.Errorf("migrate status: %w", err)
	}
	for _, s := range st {
		fmt.Fprintln(stdout, s)
	}
	return nil
}
