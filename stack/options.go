package stack

import (
	"context"
	"io"
	"os"
)

// Options are the inputs of a load besides the file itself. The zero value
// works for a local file with no grid, no terminal and the process
// environment.
type Options struct {
	// Name is the name the stack is (or will be) installed under (-n). It is
	// what ${STACK} expands to. Empty means the name part of the file's
	// `stack:` key.
	Name string
	// Grid and Platform are the GRID and PLATFORM built-ins. Platform
	// defaults to Grid.
	Grid     string
	Platform string
	// ParentStack is set for child stacks (depends); it is $PARENT_STACK.
	ParentStack string

	// Values are forced variable values (-v k=v, --values-from, or the stored
	// values of an upgrade with --reuse-values). A key "dep.var" sets the
	// variable var of the child stack dep; "a.b.var" goes two levels down.
	// Strings are converted to the variable's type.
	Values map[string]any
	// Defaults replace the `default:` of variables (e.g. an upgrade without
	// --reuse-values offering the previous answers). Same key rules as Values.
	Defaults map[string]any

	// LookupEnv reads the environment (env resolver, the implicit
	// env-of-own-name, compose files). Nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// FS reads local files: the stack file, extends/depends files, env_file,
	// the file resolver. Nil means the real filesystem.
	FS FS
	// Registry fetches stacks named like user/name:version (or URLs) in
	// depends and extends. Nil makes such references an error.
	Registry Registry
	// Grid answers vault, service_instances, service_link and certificates.
	// Nil makes those resolvers report that they need a grid.
	GridResolver GridResolver
	// Prompter asks the user. Nil means no terminal: variables that would be
	// prompted for must come from -v, the environment or their defaults.
	Prompter Prompter
	// Rand is the source for random_* resolvers. Nil means crypto/rand.
	Rand io.Reader
	// Limits bound the work one load may do; zero fields take the defaults.
	Limits Limits
}

// Limits keep hostile or broken files from exhausting memory or time.
type Limits struct {
	MaxFileSize      int // bytes of one stack/compose/env file
	MaxNodes         int // YAML nodes after expanding aliases and merge keys
	MaxRenderedSize  int // bytes of Liquid output (and of one captured block)
	MaxLiquidSteps   int // Liquid nodes rendered (loops repeat nodes)
	MaxLiquidNesting int // nested Liquid blocks
	MaxDependsDepth  int // nesting of depends (and of extends across files)
	MaxValueSize     int // bytes of one string or items of one array made by a Liquid filter
}

// defaultLimits are generous for real stacks (hundreds of services) and still
// finish in well under a second on hostile input.
var defaultLimits = Limits{
	MaxFileSize:      4 << 20,
	MaxNodes:         200000,
	MaxRenderedSize:  8 << 20,
	MaxLiquidSteps:   200000,
	MaxLiquidNesting: 64,
	MaxDependsDepth:  10,
	MaxValueSize:     1 << 20,
}

func (l Limits) withDefaults() Limits {
	d := defaultLimits
	if l.MaxFileSize > 0 {
		d.MaxFileSize = l.MaxFileSize
	}
	if l.MaxNodes > 0 {
		d.MaxNodes = l.MaxNodes
	}
	if l.MaxRenderedSize > 0 {
		d.MaxRenderedSize = l.MaxRenderedSize
	}
	if l.MaxLiquidSteps > 0 {
		d.MaxLiquidSteps = l.MaxLiquidSteps
	}
	if l.MaxLiquidNesting > 0 {
		d.MaxLiquidNesting = l.MaxLiquidNesting
	}
	if l.MaxDependsDepth > 0 {
		d.MaxDependsDepth = l.MaxDependsDepth
	}
	if l.MaxValueSize > 0 {
		d.MaxValueSize = l.MaxValueSize
	}
	return d
}

// FS reads files by path. Relative paths are relative to the process's
// working directory; the loader joins them to the including file's
// directory first.
type FS interface {
	ReadFile(path string) ([]byte, error)
}

// OSFS reads the real filesystem.
type OSFS struct{}

// ReadFile implements FS.
func (OSFS) ReadFile(path string) ([]byte, error) { return os.ReadFile(path) }

// MapFS is an in-memory FS for tests: path → content.
type MapFS map[string]string

// ReadFile implements FS.
func (m MapFS) ReadFile(path string) ([]byte, error) {
	if s, ok := m[path]; ok {
		return []byte(s), nil
	}
	return nil, &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist}
}

// OverlayFS reads Upper first and falls back to Lower, so a test can add the
// files a fixture refers to (docker-compose.yml, .env) next to real ones.
type OverlayFS struct {
	Upper FS
	Lower FS
}

// ReadFile implements FS.
func (o OverlayFS) ReadFile(path string) ([]byte, error) {
	b, err := o.Upper.ReadFile(path)
	if err == nil {
		return b, nil
	}
	return o.Lower.ReadFile(path)
}

// Registry fetches a stack file by reference: "user/name", "user/name:1.2.3"
// or an http(s) URL.
type Registry interface {
	Fetch(ctx context.Context, ref string) ([]byte, error)
}

// GridResolver is what the variable resolvers need from a running grid.
// Implementations return ErrNeedsGrid for what they cannot answer yet.
type GridResolver interface {
	// VaultRead returns a secret's value; found=false if there is no such secret.
	VaultRead(ctx context.Context, name string) (value string, found bool, err error)
	// VaultWrite stores a secret (the `to: vault` setter, applied at install).
	VaultWrite(ctx context.Context, name, value string) error
	// ServiceInstances is the instance count of stack/service; found=false if
	// the stack or service does not exist (yet).
	ServiceInstances(ctx context.Context, stack, service string) (n int, found bool, err error)
	// Services lists the grid's services, for service_link.
	Services(ctx context.Context) ([]GridService, error)
	// Certificates lists the subjects of the grid's certificates.
	Certificates(ctx context.Context) ([]string, error)
}

// GridService is one service of the grid as service_link sees it.
type GridService struct {
	Stack string // "" for stackless services
	Name  string
	Image string
}

// Link is how a stack links to this service: "stack/service".
func (s GridService) Link() string { return s.Stack + "/" + s.Name }

// Prompter asks the user for values. Implementations return ErrNotTerminal
// if they cannot ask after all.
type Prompter interface {
	// Ask reads a free-form answer; an empty answer means "no value".
	Ask(ctx context.Context, q Question) (string, error)
	// Choose picks one (or with multi, several) of the choices' values.
	Choose(ctx context.Context, q Question, choices []Choice, multi bool) ([]string, error)
}

// Question is what a prompt shows.
type Question struct {
	Variable    string
	Message     string // the resolver's prompt text, else the label
	Description string
	Default     string
	Secret      bool // do not echo (passwords)
}

// Choice is one option of Choose.
type Choice struct {
	Value       string
	Label       string
	Description string
}
