package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	tuneGC(os.Getenv)
	m := NewMain()
	err := m.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err == nil {
		err = m.Wait(ctx)
		stop() // a second signal during shutdown kills the process at once
	}
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(os.Stderr, "tracseq-tx:", err)
		}
		os.Exit(exitCode(err))
	}
}
