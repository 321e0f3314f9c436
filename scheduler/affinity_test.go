package scheduler

import (
	"strings"
	"testing"
)

// affinityGrid: n1, n2 in az a; n3, n4 in az b; n4 also has an hdd; worker
// names for the regex cases. app/db runs on n2, other/db on n3, app/cache-2
// on n4.
func affinityGrid() *State {
	nodes := []Node{
		nd("n1", "az=a"), nd("n2", "az=a", "disk=ssd"), nd("n3", "az=b"), nd("n4", "az=b", "disk=hdd"),
		nd("worker-1", "az=c"), nd("worker-x", "az=c"),
	}
	insts := []Instance{inst("app/db", 1, "n2"), inst("other/db", 1, "n3"), inst("app/cache", 2, "n4")}
	return NewState(nodes, insts, nil)
}

func TestAffinityForms(t *testing.T) {
	cases := []struct {
		rules []string
		n     int
		want  string // nodes of instances 1..n, or the error
	}{
		{[]string{"node==n3"}, 2, "n3,n3"},
		{[]string{"node!=n1"}, 1, "worker-1"}, // ties go to the node with fewest instances
		{[]string{`node==/^worker-\d+$/`}, 2, "worker-1,worker-1"},
		{[]string{"node!=/^n/"}, 2, "worker-1,worker-x"},
		{[]string{"service==db"}, 1, "n2"},       // stack-qualified: app/db
		{[]string{"service==other/db"}, 1, "n3"}, // explicit stack
		{[]string{"service!=db", "service!=other/db", "label!=az=c"}, 2, "n1,n4"},
		{[]string{"service==/^db$/"}, 1, "n2"},      // bare name, same stack only
		{[]string{`service==/^other\/d/`}, 1, "n3"}, // qualified name
		{[]string{"container==cache-%s"}, 2, "cannot place app/web-1: affinity container==cache-1 rejected n1, n2, n3, n4, worker-1, worker-x (app/cache-1 does not exist)"},
		{[]string{"container==cache-2"}, 1, "n4"},
		{[]string{"container!=/^cache-/", "label!=az=c"}, 3, "n1,n3,n2"},
		{[]string{"label==az=b"}, 2, "n3,n4"},
		{[]string{"label!=disk=hdd", "label!=az=a"}, 2, "worker-1,n3"},
		{[]string{"label==/^disk=/"}, 2, "n2,n4"},
		{[]string{"node==n%s"}, 3, "n1,n2,n3"},
		{[]string{"label==az=z"}, 1, "cannot place app/web-1: affinity label==az=z rejected n1, n2 (az=a), n3, n4 (az=b), worker-1, worker-x (az=c)"},
		{[]string{"label==gpu"}, 1, "cannot place app/web-1: affinity label==gpu rejected n1, n2, n3, n4, worker-1, worker-x (no gpu label)"},
		{[]string{"label!=disk=hdd", "node==n4"}, 1, "cannot place app/web-1: affinity label!=disk=hdd rejected n4 (disk=hdd); affinity node==n4 rejected n1, n2, n3, worker-1, worker-x"},
		{[]string{"service==cache"}, 1, "n4"},
		{[]string{"service!=cache", "node==n4"}, 1, "cannot place app/web-1: affinity service!=cache rejected n4 (runs app/cache); affinity node==n4 rejected n1, n2, n3, worker-1, worker-x"},
		{[]string{"service==nope"}, 1, "cannot place app/web-1: affinity service==nope rejected n1, n2, n3, n4, worker-1, worker-x (no app/nope instance)"},
		{[]string{"colour==red"}, 1, `service app/web: affinity "colour==red": unknown key "colour" (use node, service, container or label)`},
		{[]string{"colour!=red"}, 1, `service app/web: affinity "colour!=red": unknown key "colour" (use node, service, container or label)`},
		// What each form says about the nodes it rejects.
		{[]string{"label!=/^disk=/", "node==n2"}, 1, "cannot place app/web-1: affinity label!=/^disk=/ rejected n2 (disk=ssd), n4 (disk=hdd); affinity node==n2 rejected n1, n3, worker-1, worker-x"},
		{[]string{"node==n1", "label==/^gpu/"}, 1, "cannot place app/web-1: affinity node==n1 rejected n2, n3, n4, worker-1, worker-x; affinity label==/^gpu/ rejected n1 (labels az=a)"},
		{[]string{"service!=/^d/", "node==n2"}, 1, "cannot place app/web-1: affinity service!=/^d/ rejected n2 (runs app/db); affinity node==n2 rejected n1, n3, n4, worker-1, worker-x"},
		{[]string{"node==n1", "service==/^x/"}, 1, "cannot place app/web-1: affinity node==n1 rejected n2, n3, n4, worker-1, worker-x; affinity service==/^x/ rejected n1 (no service matching /^x/)"},
		{[]string{"container!=cache-2", "node==n4"}, 1, "cannot place app/web-1: affinity container!=cache-2 rejected n4 (runs app/cache-2); affinity node==n4 rejected n1, n2, n3, worker-1, worker-x"},
		{[]string{"container!=/cache/", "node==n4"}, 1, "cannot place app/web-1: affinity container!=/cache/ rejected n4 (runs app/cache-2); affinity node==n4 rejected n1, n2, n3, worker-1, worker-x"},
		{[]string{"node==n1", "container==/^db-/"}, 1, "cannot place app/web-1: affinity node==n1 rejected n2, n3, n4, worker-1, worker-x; affinity container==/^db-/ rejected n1 (no container matching /^db-/)"},
		{[]string{"node==n1", "container==cache-2"}, 1, "cannot place app/web-1: affinity node==n1 rejected n2, n3, n4, worker-1, worker-x; affinity container==cache-2 rejected n1 (app/cache-2 runs on n4)"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.rules, " "), func(t *testing.T) {
			svc := web(c.n)
			svc.Affinity = c.rules
			p, err := placeErr(affinityGrid(), svc)
			got := err
			if err == "" {
				got = strings.Join(where(p), ",")
			}
			eq(t, "result", got, c.want)
		})
	}
}

func TestSoftAffinity(t *testing.T) {
	cases := []struct {
		rules []string
		n     int
		want  string
	}{
		{[]string{"node==~n3"}, 2, "n3,n3"},         // honoured when it matches
		{[]string{"node==~nope"}, 2, "n1,worker-1"}, // dropped when nothing matches: plain ha
		{[]string{"label!=~az=a", "label!=~az=b"}, 1, "worker-1"},
		{[]string{"label==az=a", "label!=~az=a"}, 2, "n1,n2"}, // second rule would leave nothing: dropped
		{[]string{"label==~az=b", "node==n1"}, 1, "cannot place app/web-1: affinity label==~az=b rejected n1, n2 (az=a), worker-1, worker-x (az=c); affinity node==n1 rejected n3, n4"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.rules, " "), func(t *testing.T) {
			svc := web(c.n)
			svc.Affinity = c.rules
			p, err := placeErr(affinityGrid(), svc)
			got := err
			if err == "" {
				got = strings.Join(where(p), ",")
			}
			eq(t, "result", got, c.want)
		})
	}
}

// A service with affinity to itself counts only this plan's placements:
// its current instances are the ones being placed.
func TestAffinityToItself(t *testing.T) {
	st := NewState([]Node{nd("n1"), nd("n2"), nd("n3")}, []Instance{inst("app/web", 1, "n1"), inst("app/web", 2, "n1")}, nil)
	svc := web(3)
	svc.Affinity = []string{"service!=web"}
	eqList(t, "one per node", where(place(t, st, svc)), []string{"n1", "n2", "n3"})

	svc.Instances = 4
	_, err := placeErr(st, svc)
	eq(t, "error", err, "cannot place app/web-4: affinity service!=web rejected n1, n2, n3 (runs app/web)")

	together := web(2)
	together.Affinity = []string{"service==web"}
	_, err = placeErr(st, together)
	eq(t, "error", err, "cannot place app/web-1: affinity service==web rejected n1, n2, n3 (no app/web instance)\n"+
		"cannot place app/web-2: affinity service==web rejected n1, n2, n3 (no app/web instance)")

	chained := web(3)
	chained.Affinity = []string{"container==web-1"}
	_, err = placeErr(st, chained)
	eq(t, "own container not placed yet", err, "cannot place app/web-1: affinity container==web-1 rejected n1, n2, n3 (app/web-1 does not exist)\n"+
		"cannot place app/web-2: affinity container==web-1 rejected n1, n2, n3 (app/web-1 does not exist)\n"+
		"cannot place app/web-3: affinity container==web-1 rejected n1, n2, n3 (app/web-1 does not exist)")
}

func TestGridDefaultAffinity(t *testing.T) {
	nodes := []Node{nd("n1", "az=a"), nd("n2", "az=b", "role=infra")}
	st := NewState(nodes, nil, []string{"label!=role=infra"})
	eqList(t, "default applies", where(place(t, st, web(2))), []string{"n1", "n1"})

	own := web(1)
	own.Affinity = []string{"label==role=infra"}
	eqList(t, "service affinity replaces it", where(place(t, st, own)), []string{"n2"})

	st = NewState(nodes[1:], nil, []string{"label!=role=infra"})
	_, err := placeErr(st, web(1))
	eq(t, "error names the default", err, "cannot place app/web-1: affinity label!=role=infra (grid default) rejected n2 (role=infra)")
}

func TestAffinityParseErrors(t *testing.T) {
	for _, c := range []struct{ rule, err string }{
		{"node", `service app/web: affinity "node": expected key==value or key!=value (soft: ==~, !=~) with key node, service, container or label`},
		{"==n1", `service app/web: affinity "==n1": expected key==value or key!=value (soft: ==~, !=~) with key node, service, container or label`},
		{"node==", `service app/web: affinity "node==": expected key==value or key!=value (soft: ==~, !=~) with key node, service, container or label`},
		{"node==~", `service app/web: affinity "node==~": the value after == is empty`},
		{"node==/[/", "service app/web: affinity \"node==/[/\": invalid regular expression: error parsing regexp: missing closing ]: `[`"},
	} {
		svc := web(1)
		svc.Affinity = []string{c.rule}
		_, err := placeErr(affinityGrid(), svc)
		eq(t, c.rule, err, c.err)
	}
}

// "%s" can turn a valid pattern into an invalid one for some numbers; the
// instance then fails with the reason instead of panicking.
func TestAffinityPerNumberRegex(t *testing.T) {
	svc := web(2)
	svc.Affinity = []string{"node==/^n[%s-1]$/"}
	p, err := placeErr(affinityGrid(), svc)
	eqList(t, "placed", where(p), []string{"n1"})
	if !strings.Contains(err, "cannot place app/web-2: affinity node==/^n[2-1]$/ rejected n1, n2, n3, n4, worker-1, worker-x (affinity \"node==/^n[%s-1]$/\": invalid regular expression") {
		t.Errorf("error: %s", err)
	}
}
