package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// version is the release, set at link time with
// -ldflags "-X main.version=v1.2.3" (Makefile, Dockerfile). When it is
// empty the module version or VCS revision of the build is shown instead.
var version string

// errSilent marks an error whose message was already printed (usage).
var errSilent = errors.New("already reported")

// usageError is a wrong command line: exit status 2, like the flag package.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a *usageError.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCode is the process status for err: 2 for a usage error, 1 otherwise.
func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

// Main is the program. Run starts it: for `serve` it returns once the
// service listens (Addr tells where), and Close shuts it down; every other
// subcommand does its work within Run. Tests start it in-process.
type Main struct {
	// Stdin is read by `submit -`; os.Stdin when nil.
	Stdin io.Reader

	mu      sync.Mutex
	service *service // set while serving
	closed  bool
}

// NewMain returns a Main ready to Run.
func NewMain() *Main { return &Main{} }

// command is one subcommand.
type command struct {
	name    string
	usage   string // arguments, after the name
	summary string
	run     func(m *Main, ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order `help` shows them.
func commands() []command {
	return []command{
		{"serve", "", "run the service (the default; configured from the environment)", (*Main).runServe},
		{"migrate", "[up|status] [--json]", "apply the database migrations to DATABASE_URL, or list them", (*Main).runMigrate},
		{"version", "", "print the version", (*Main).runVersion},
		{"health", "[--ready] [--url URL]", "ask a running service whether it is alive (or ready); exit status 1 if not", (*Main).runHealth},
		{"list", "[--status S] [--name N] [--transaction-id ID] [--created-after T] [--limit N] [--cursor C] [--all]", "list sagas, newest first", (*Main).runList},
		{"show", "ID", "show a saga with its steps and events", (*Main).runShow},
		{"submit", "FILE|- [--wait 30s] [--idempotency-key K] [--reason R]", "submit a saga definition (JSON) with an idempotency key (printed) and optionally wait for its end", (*Main).runSubmit},
		{"pause", "ID [--reason R]", "pause a saga between steps", controlCommand("pause")},
		{"resume", "ID [--reason R]", "resume a paused saga", controlCommand("resume")},
		{"cancel", "ID [--reason R]", "cancel a saga (its completed steps are compensated)", controlCommand("cancel")},
		{"retry", "ID [--reason R]", "retry the compensation of a Failed saga", controlCommand("retry")},
		{"hold", "ID [--reason R]", "put a saga under legal hold: cleanup never deletes it", holdCommand(true)},
		{"unhold", "ID [--reason R]", "clear a saga's legal hold", holdCommand(false)},
		{"stats", "[--window 1h]", "show counts by status, rates and durations", (*Main).runStats},
		{"cleanup", "[--direct] [--reason R]", "delete the finished sagas whose retention (CLEANUP_*_AFTER_HOURS) has passed, now", (*Main).runCleanup},
		{"audit", "verify|replay|export|deletions", "check, rebuild and export the audit trail in DATABASE_URL (audit -h)", (*Main).runAudit},
		{"help", "", "show this list", (*Main).runHelp},
	}
}

// Run runs the subcommand named by args[0] (`serve` when args is empty or
// starts with a flag). env reads the environment (os.Getenv in production);
// output goes to stdout, logs and messages to stderr.
func (m *Main) Run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	name := "serve"
	if len(args) > 0 {
		switch {
		case args[0] == "-h" || args[0] == "-help" || args[0] == "--help":
			name = "help"
		case !strings.HasPrefix(args[0], "-"):
			name, args = args[0], args[1:]
		}
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(m, ctx, args, env, stdout, stderr)
		}
	}
	return usagef("unknown command %q (`tracseq-tx help` lists the commands)", name)
}

// Wait blocks while the service runs: until ctx is done (a signal) or the
// HTTP server fails. It returns at once for subcommands other than serve.
func (m *Main) Wait(ctx context.Context) error {
	m.mu.Lock()
	svc := m.service
	m.mu.Unlock()
	if svc == nil {
		return nil
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-svc.failed:
		return err
	}
}

// Addr returns the address the API listens on ("127.0.0.1:41234"), or ""
// when the service is not running.
func (m *Main) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.service == nil {
		return ""
	}
	return m.service.addr()
}

// Close shuts the service down gracefully: it stops accepting requests,
// lets running sagas finish their current call and releases them, and
// closes the store. It is safe to call more than once and when nothing runs.
func (m *Main) Close() error {
	m.mu.Lock()
	svc := m.service
	m.service = nil
	m.closed = true
	m.mu.Unlock()
	if svc == nil {
		return nil
	}
	return svc.close()
}

func (m *Main) stdin() io.Reader {
	if m.Stdin != nil {
		return m.Stdin
	}
	return os.Stdin
}

func (m *Main) printHelp(w io.Writer) {
	fmt.Fprintf(w, "tracseq-tx %s: the TracSeq Transaction Service, a saga coordinator\n\n", versionString())
	fmt.Fprintln(w, "Usage: tracseq-tx [command] [flags] [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		line := c.name
		if c.usage != "" {
			line += " " + c.usage
		}
		fmt.Fprintf(w, "  %s\n      %s\n", line, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The operator commands talk to a running service: --url (default $TRACSEQ_URL")
	fmt.Fprintln(w, "or http://localhost:8080), --token (default $TRACSEQ_TOKEN), --json for scripts.")
	fmt.Fprintln(w, "`tracseq-tx COMMAND -h` shows a command's flags. README.md lists the environment.")
}

func (m *Main) runHelp(_ context.Context, _ []string, _ func(string) string, stdout, _ io.Writer) error {
	m.printHelp(stdout)
	return nil
}

func (m *Main) runVersion(_ context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() > 0 {
		return usagef("version takes no arguments")
	}
	fmt.Fprintf(stdout, "tracseq-tx %s (%s, %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// flagError turns a flag parsing error into the program's error: the flag
// package already printed it with the usage. Asking for help (-h) is not an
// error.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return fmt.Errorf("%w: %w", errSilent, &usageError{msg: err.Error()})
}

// versionString returns the link-time version, else what the build knows.
func versionString() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "devel"
	}
	return "devel-" + rev + dirty
}
