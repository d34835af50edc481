package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fwagent/fwagent/bench/harness"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "gen" {
		if err := harness.RunGen(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	opt, err := harness.ParseFlags("e2e", os.Args[1:], "bench/out")
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, opt); err != nil {
		log.Error("e2e", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, opt harness.Options) error {
	root, err := harness.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("e2e: own executable: %w", err)
	}
	return harness.Run(ctx, log, harness.Env{
		Exe: exe, GenArgs: []string{"gen"}, Root: root,
		Command: "go run ./bench/e2e " + strings.Join(os.Args[1:], " "),
		Stdout:  os.Stdout, Stderr: os.Stderr,
	}, opt)
}
