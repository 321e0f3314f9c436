package stack

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixturesDir is the compatibility corpus; CI checks shared/ out beside the
// repository.
var fixturesDir = filepath.Join("..", "..", "shared", "compat", "kontena-fixtures")

func requireFixtures(t testing.TB) {
	t.Helper()
	if st, err := os.Stat(fixturesDir); err != nil || !st.IsDir() {
		t.Fatalf("the Kontena compatibility fixtures are missing: expected the directory %s (shared/compat/kontena-fixtures beside the repository): %v", fixturesDir, err)
	}
}

func fx(rel string) string { return filepath.Join(fixturesDir, filepath.FromSlash(rel)) }

// extraFiles are files the fixtures refer to that the corpus does not carry
// (its README says tests write them). Contents are this project's own.
func extraFiles() MapFS {
	return MapFS{
		fx("cli/docker-compose_v2.yml"): `version: '2'
services:
  wordpress:
    image: wordpress:4.6
    ports:
      - 80:80
    environment:
      - WORDPRESS_DB_HOST=mysql
    depends_on:
      - mysql
  mysql:
    image: mysql:5.7
    container_name: ignored-by-kontena
`,
		fx("cli/docker-compose_v2_with_variables.yml"): `version: '2'
services:
  mysql:
    image: mysql:5.7
    environment:
      - ENV_VAR=$ENV_VAR
`,
		fx("cli/.env"): `# comment
WORDPRESS_DB_PASSWORD=from-env-file
EXTRA=1

export SECOND=two
`,
	}
}

// fakeRegistry serves stacks by reference.
type fakeRegistry map[string]string

func (r fakeRegistry) Fetch(_ context.Context, ref string) ([]byte, error) {
	if s, ok := r[ref]; ok {
		return []byte(s), nil
	}
	return nil, errors.New("not found in the registry")
}

func testRegistry() fakeRegistry {
	return fakeRegistry{
		"kontena/redis:0.1.0": `stack: kontena/redis
version: 0.1.0
expose: redis
variables:
  version:
    type: string
    default: 3.2-alpine
services:
  redis:
    image: redis:${version}
`,
		"registrystack/compose:1.0.0": `stack: registrystack/compose
version: 1.0.0
services:
  wordpress:
    image: wordpress:4.6
    ports:
      - 80:80
  mysql:
    image: mysql:5.7
`,
	}
}

// fakeGrid answers the grid resolvers from fixed data.
type fakeGrid struct {
	vault     map[string]string
	instances map[string]int // "stack/service"
	services  []GridService
	certs     []string
	written   map[string]string
}

func (g *fakeGrid) VaultRead(_ context.Context, name string) (string, bool, error) {
	v, ok := g.vault[name]
	return v, ok, nil
}

func (g *fakeGrid) VaultWrite(_ context.Context, name, value string) error {
	if g.written == nil {
		g.written = map[string]string{}
	}
	g.written[name] = value
	return nil
}

func (g *fakeGrid) ServiceInstances(_ context.Context, stack, service string) (int, bool, error) {
	n, ok := g.instances[stack+"/"+service]
	return n, ok, nil
}

func (g *fakeGrid) Services(context.Context) ([]GridService, error) { return g.services, nil }
func (g *fakeGrid) Certificates(context.Context) ([]string, error)  { return g.certs, nil }

func envFrom(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// baseOptions are hermetic: no process environment, no real randomness.
func baseOptions() Options {
	return Options{
		LookupEnv: envFrom(nil),
		FS:        OverlayFS{Upper: extraFiles(), Lower: OSFS{}},
		Registry:  testRegistry(),
		Rand:      bytes.NewReader(bytes.Repeat([]byte{7, 200, 13, 99, 42}, 4096)),
		Grid:      "testgrid",
	}
}

// loadString loads an in-memory stack file named kontena.yml.
func loadString(t testing.TB, src string, opts Options) (*Result, error) {
	t.Helper()
	return LoadBytes(context.Background(), "kontena.yml", []byte(src), opts)
}

func mustLoadString(t testing.TB, src string, opts Options) *Result {
	t.Helper()
	res, err := loadString(t, src, opts)
	if err != nil {
		t.Fatalf("load failed:\n%v", err)
	}
	return res
}

func wantErr(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected an error containing %q, got none", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error does not contain %q:\n%v", p, err)
		}
	}
}

func eq[T comparable](t testing.TB, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func svc(t testing.TB, res *Result, name string) *Service {
	t.Helper()
	s := res.Stack.Service(name)
	if s == nil {
		var names []string
		for _, x := range res.Stack.Services {
			names = append(names, x.Name)
		}
		t.Fatalf("no service %q (have %v)", name, names)
	}
	return s
}

func env(t testing.TB, s *Service, name string) string {
	t.Helper()
	v, ok := s.Env(name)
	if !ok {
		t.Fatalf("service %s has no environment variable %s (have %v)", s.Name, name, s.Environment)
	}
	return v
}

func noEnv(t testing.TB, s *Service, name string) {
	t.Helper()
	if v, ok := s.Env(name); ok {
		t.Errorf("service %s should not have %s (it is %q)", s.Name, name, v)
	}
}

func child(t testing.TB, res *Result, name string) *Result {
	t.Helper()
	for _, c := range res.Children {
		if c.Name == name {
			return c
		}
	}
	var names []string
	for _, c := range res.Children {
		names = append(names, c.Name)
	}
	t.Fatalf("no child stack %q (have %v)", name, names)
	return nil
}
