package stack

import (
	"context"
	"testing"
)

// TestExplicitEmptyIsNone: -v lb= (or null in --values-from) means "none"
// for an optional variable; with no value given, the resolver answers.
func TestExplicitEmptyIsNone(t *testing.T) {
	src := "stack: t/x\nversion: 1.0.0\nvariables:\n  lb:\n    type: string\n    required: false\n    from:\n      service_link:\n        image: haproxy\nservices:\n  web:\n    image: web\n    {% if lb %}links: [\"{{ lb }}\"]{% endif %}\n"
	g := &fakeGrid{services: []GridService{{Stack: "lbs", Name: "lb", Image: "haproxy:2"}}}
	for _, vals := range []map[string]any{nil, {"lb": ""}, {"lb": nil}} {
		res, err := LoadBytes(context.Background(), "kontena.yml", []byte(src), Options{GridResolver: g, Values: vals})
		if err != nil {
			t.Fatal(err)
		}
		got := variable(t, res, "lb").Value
		if vals == nil && (got != "lbs/lb" || len(res.Stack.Services[0].Links) != 1) {
			t.Errorf("no value given: service_link found %#v, links %v", got, res.Stack.Services[0].Links)
		}
		if vals != nil && (got != nil || len(res.Stack.Services[0].Links) != 0) {
			t.Errorf("%v means none: got %#v, links %v", vals, got, res.Stack.Services[0].Links)
		}
	}
}
