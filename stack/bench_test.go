package stack

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// fiftyServices is a stack shaped like a real one: variables of several
// types, a Liquid conditional and loop, ${} everywhere, links, ports,
// volumes, health checks, an extends and an env_file.
func fiftyServices() string {
	var b strings.Builder
	b.WriteString(`stack: bench/fifty
version: 1.2.3
description: generated benchmark stack
variables:
  tag:
    type: string
    default: "1.0"
  replicas:
    type: integer
    default: 2
    min: 1
  debug:
    type: boolean
    default: false
  region:
    type: enum
    options: [eu, us]
    default: eu
  password:
    type: string
    from:
      random_string: 24
  extra:
    type: integer
    default: 3
volumes:
  data:
    driver: local
    scope: instance
services:
  base:
    image: registry.example.com/base:${tag}
    environment:
      - REGION=${region}
`)
	for i := 0; i < 50-1-3; i++ {
		fmt.Fprintf(&b, `  svc%[1]d:
    extends: base
    image: registry.example.com/svc%[1]d:${tag}
    instances: ${replicas}
    env_file: common.env
    environment:
      SERVICE: svc%[1]d
      PASSWORD: ${password}
      # {%% if debug %%}
      DEBUG: "1"
      # {%% endif %%}
    ports:
      - "%[2]d:80"
    links:
      - base
    volumes:
      - data:/data
    deploy:
      strategy: ha
      min_health: 0.5
      wait_for_port: 80
    health_check:
      protocol: http
      port: 80
      uri: /health
    stop_grace_period: 30s
`, i, 10000+i)
	}
	b.WriteString(`  # {% for i in (1..extra) %}
  worker{{ i }}:
    image: worker:${tag}
    command: run --id {{ i }}
  # {% endfor %}
`)
	return b.String()
}

func BenchmarkLoad50Services(b *testing.B) {
	src := []byte(fiftyServices())
	opts := Options{LookupEnv: envFrom(nil), FS: MapFS{"common.env": "A=1\nB=2\n"}}
	res, err := LoadBytes(context.Background(), "kontena.yml", src, opts)
	if err != nil {
		b.Fatal(err)
	}
	if n := len(res.Stack.Services); n != 50 {
		b.Fatalf("generated stack has %d services, want 50", n)
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := LoadBytes(context.Background(), "kontena.yml", src, opts); err != nil {
			b.Fatal(err)
		}
	}
}
