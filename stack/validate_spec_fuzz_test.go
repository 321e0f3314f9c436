package stack_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kontena-ng/kontena/api"
	"github.com/kontena-ng/kontena/stack"
)

// validateSeeds are requests as the CLI sends them (the fixtures below are
// added when the corpus is checked out) and the ones that once bricked a
// grid.
var validateSeeds = []string{
	`{"name":"shop","spec":{"services":[{"name":"web","image":"web:1","instances":1,"deploy":{"strategy":"ha","min_health":0.8},"stop_grace_period":"10s"}]}}`,
	`{"name":"shop","spec":{"services":[{"name":"web","image":"web:1","instances":1,"volumes":[null]}]}}`,
	`{"name":"shop","spec":{"volumes":[null],"services":[{"name":"web","image":"web:1","volumes":[{"volume":"data","path":"/d"}]}]}}`,
	`{"name":"shop","spec":{"services":[null]}}`,
	`{"name":"shop","spec":{"services":[{"name":"web","image":"web:1","instances":4611686018427387904}]}}`,
	`{"name":"shop","spec":{"services":[{"name":"web","image":"x","ports":[null],"links":[null],"environment":[null],"hooks":{"post_start":[null]}}]}}`,
	`{"name":"shop","spec":{"variables":[null],"depends":[null],"labels":{"":"x"},"meta":{"tags":[""]},"services":[]}}`,
}

// fixtureSeeds loads a few small fixtures of the compatibility corpus as
// the CLI would and returns the requests it would send.
func fixtureSeeds(tb testing.TB) []string {
	dir := filepath.Join("..", "..", "shared", "compat", "kontena-fixtures", "cli")
	var out []string
	for _, name := range []string{"kontena_v3.yml", "stack-with-volumes.yml", "stack-with-labels.yml", "stack-with-anchors.yml", "stack-internal-extend.yml"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		res, err := stack.LoadBytes(context.Background(), name, b, stack.Options{FS: stack.MapFS{}, Name: "fixture",
			Values: map[string]any{}, LookupEnv: func(string) (string, bool) { return "", false }})
		if err != nil || res.Stack == nil {
			continue
		}
		req, _ := json.Marshal(api.StackInstallRequest{Name: res.Name, FileName: name, Source: res.Source, Values: res.Variables, Spec: *res.Stack})
		out = append(out, string(req))
	}
	return out
}

// checkServer is what the server runs on a request (cluster's
// checkStackRequest, less the image check).
func checkServer(req *api.StackInstallRequest) error {
	if err := stack.ValidateStackName(req.Name); err != nil {
		return err
	}
	req.Spec.Name = req.Name
	return stack.ValidateSpec(&req.Spec)
}

func FuzzValidateSpec(f *testing.F) {
	for _, s := range validateSeeds {
		f.Add([]byte(s))
	}
	for _, s := range fixtureSeeds(f) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req api.StackInstallRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return
		}
		err := checkServer(&req)
		if err != nil {
			var one *stack.Error
			var list stack.Errors
			switch {
			case errors.As(err, &list):
				if len(list) == 0 {
					t.Fatal("an empty Errors")
				}
				for _, e := range list {
					if e == nil || strings.TrimSpace(e.Error()) == "" {
						t.Fatalf("an empty problem in %v", list)
					}
				}
			case errors.As(err, &one):
			default:
				t.Fatalf("error %T %v is not a stack error", err, err)
			}
			return
		}
		// What passes has what the grid relies on.
		if len(req.Spec.Services) > stack.MaxServices {
			t.Fatalf("%d services accepted", len(req.Spec.Services))
		}
		for _, s := range req.Spec.Services {
			if s == nil || s.Instances < 0 || s.Instances > stack.MaxInstances || s.Name == "" {
				t.Fatalf("accepted service %+v", s)
			}
		}
		for _, v := range req.Spec.Volumes {
			if v == nil {
				t.Fatal("accepted a null volume")
			}
		}
		// And it stays valid through the wire and the store (JSON).
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back api.StackInstallRequest
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal its own JSON: %v", err)
		}
		if err := checkServer(&back); err != nil {
			t.Fatalf("valid, but not after a JSON round trip: %v\n%s", err, b)
		}
	})
}
