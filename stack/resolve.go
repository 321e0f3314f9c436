package stack

import (
	"errors"
	"fmt"
	"strings"
)

// VaultWrite is a pending `to: vault` setter: install writes it, validate
// does not.
type VaultWrite struct {
	Variable string `json:"variable"`
	Secret   string `json:"secret"`
	Value    string `json:"-"`
}

// varEngine resolves a stack's variables lazily, so that interpolate,
// evaluate and conditions may refer to variables declared later, and
// reports cycles instead of recursing forever.
type varEngine struct {
	ly       *layer
	d        *decoder
	vars     map[string]*Variable
	order    []*Variable
	builtins map[string]string
	deps     map[string]string    // dependency name → child stack name
	aliases  map[string]*Variable // `to: env` names
	state    map[string]uint8     // 1 resolving, 2 done
	writes   []VaultWrite
}

func newVarEngine(ly *layer, d *decoder, defs []*Variable, builtins, deps map[string]string) *varEngine {
	e := &varEngine{ly: ly, d: d, vars: map[string]*Variable{}, order: defs, builtins: builtins,
		deps: deps, aliases: map[string]*Variable{}, state: map[string]uint8{}}
	for _, v := range defs {
		if _, isDep := deps[v.Name]; isDep {
			d.errorf(v.keyNode, "variables."+v.Name, "%q is also the name of a dependency in depends; rename one of them", v.Name)
		}
		e.vars[v.Name] = v
	}
	for _, v := range defs {
		for _, s := range v.To {
			if s.Name != "env" || s.Target == v.Name {
				continue
			}
			if _, taken := e.vars[s.Target]; taken {
				d.errorf(v.keyNode, "variables."+v.Name+".to.env", "%q is already a variable", s.Target)
				continue
			}
			e.aliases[s.Target] = v
		}
	}
	return e
}

// lookup returns a value by ${} name: built-ins, dependency names,
// variables and `to: env` aliases.
func (e *varEngine) lookup(name string) (any, bool) {
	if v, ok := e.builtins[name]; ok {
		return v, true
	}
	if v, ok := e.deps[name]; ok {
		return v, true
	}
	if v, ok := e.vars[name]; ok {
		e.resolve(v)
		return v.Value, true
	}
	if v, ok := e.aliases[name]; ok {
		e.resolve(v)
		return v.Value, true
	}
	return nil, false
}

// lookupErr is lookup for resolvers that must fail on a variable that
// failed (so its error is not repeated as "no value").
func (e *varEngine) lookupErr(name string) (any, bool, error) {
	v, ok := e.lookup(name)
	if vr := e.vars[name]; vr != nil && vr.failed {
		return nil, true, errQuiet
	}
	return v, ok, nil
}

// errQuiet marks an error already reported elsewhere.
var errQuiet = errors.New("already reported")

func (e *varEngine) anyFailed() bool {
	for _, v := range e.order {
		if v.failed {
			return true
		}
	}
	return false
}

func (e *varEngine) resolveAll() {
	for _, v := range e.order {
		e.resolve(v)
	}
}

func (e *varEngine) path(v *Variable) string { return "variables." + v.Name }

func (e *varEngine) fail(v *Variable, format string, args ...any) {
	v.failed = true
	v.Value, v.liquid = nil, nil
	e.d.errorf(v.keyNode, e.path(v), format, args...)
}

func (e *varEngine) resolve(v *Variable) {
	switch e.state[v.Name] {
	case 2:
		return
	case 1:
		e.fail(v, "the variable depends on itself (through interpolate, evaluate, only_if or skip_if)")
		e.state[v.Name] = 2
		return
	}
	e.state[v.Name] = 1
	defer func() { e.state[v.Name] = 2 }()

	include, ok := e.d.included(v.onlyIf, v.skipIf, e.path(v), e.lookup)
	if !ok {
		v.failed = true
		return
	}
	if !include {
		v.Skipped = true
		return
	}
	if e.ly.l.ctx.Err() != nil {
		e.fail(v, "%v", e.ly.l.ctx.Err())
		return
	}
	if raw, ok := e.ly.values[v.Name]; ok {
		// An explicit empty value (-v lb=, or null in --values-from) is
		// "none" for an optional variable: no resolver or default runs.
		if !v.Required && (raw == nil || raw == "") {
			v.Value, v.Origin = nil, "values"
			e.finish(v)
			return
		}
		if e.set(v, raw, "values") || v.failed {
			e.finish(v)
			return
		}
	}
	if v.valueNode != nil && !isNull(v.valueNode) {
		if e.set(v, nodeValue(v.valueNode), "value") || v.failed {
			e.finish(v)
			return
		}
	}
	if e.runResolvers(v) || v.failed {
		e.finish(v)
		return
	}
	def := v.Default
	if d, ok := e.ly.defaults[v.Name]; ok {
		def = d
	}
	e.set(v, def, "default")
	e.finish(v)
}

// set sanitizes raw into v; reports whether v now has a value.
func (e *varEngine) set(v *Variable, raw any, origin string) bool {
	out, liquid, note, err := v.sanitize(raw, e.evalNumber)
	if err != nil {
		if errors.Is(err, errQuiet) {
			v.failed = true
			return false
		}
		e.fail(v, "%v (from %s)", err, e.originText(v, origin))
		return false
	}
	// A boolean always has a value (nil_is); don't let its default hide a
	// resolver that was skipped for lack of a terminal.
	if out == nil && liquid == nil {
		return false
	}
	if note != "" {
		e.d.warnf(v.originNode(origin), e.path(v), "%s (from %s); %s", note, e.originText(v, origin), wholeNumberHint(origin, raw, out))
	}
	v.Value, v.liquid, v.Origin = out, liquid, origin
	return true
}

// originText names where a value came from, for messages about it.
func (e *varEngine) originText(v *Variable, origin string) string {
	switch origin {
	case "values":
		return "the value given with -v " + e.ly.valuePrefix + v.Name
	case "value", "default":
		return "its " + origin + ":"
	}
	return "the " + origin + " resolver"
}

// evalNumber computes a calculation given as an integer variable's value;
// the integer type decides what to do with a fraction.
func (e *varEngine) evalNumber(expr string) (any, error) {
	s, err := expandRefs(expr, e.lookupErr)
	if err != nil {
		return nil, err
	}
	return evalArithmetic(s)
}

// runResolvers tries the implicit environment variable of the variable's own
// name (unless `from` reads the environment itself), then `from` in order.
func (e *varEngine) runResolvers(v *Variable) bool {
	list := v.From
	hasEnv := false
	for _, r := range list {
		if r.Name == "env" {
			hasEnv = true
		}
	}
	if !hasEnv {
		list = append([]Resolver{{Name: "env", Hint: v.Name}}, list...)
	}
	for _, r := range list {
		raw, err := e.runResolver(v, r)
		if errors.Is(err, errOffline) {
			continue
		}
		if err != nil {
			if !errors.Is(err, errQuiet) {
				e.fail(v, "from %s: %v", r.Name, err)
			} else {
				v.failed = true
			}
			return false
		}
		if raw == nil {
			continue
		}
		if e.set(v, raw, r.Name) {
			return true
		}
		if v.failed {
			return false
		}
	}
	return false
}

// finish checks required values and applies setters.
func (e *varEngine) finish(v *Variable) {
	if v.failed {
		return
	}
	if v.Value == nil && v.liquid == nil && v.Required {
		hint := fmt.Sprintf("pass it with -v %s%s=VALUE", e.ly.valuePrefix, v.Name)
		if v.wantPrompt {
			e.fail(v, "no value: this variable is asked with a prompt, but there is no terminal; %s", hint)
			return
		}
		if v.wantGrid != "" {
			e.fail(v, "%s", e.offlineErr(v))
			return
		}
		e.fail(v, "required variable has no value; %s (or set the environment variable %s)", hint, v.Name)
		return
	}
	if v.Value == nil {
		return
	}
	for _, s := range v.To {
		if s.Name == "vault" {
			e.writes = append(e.writes, VaultWrite{Variable: v.Name, Secret: s.Target, Value: textOf(v.Value)})
		}
	}
}

// liquidBindings are the names Liquid templates may use.
func (e *varEngine) liquidBindings() map[string]any {
	b := map[string]any{}
	for k, v := range e.builtins {
		b[k] = v
	}
	for k, v := range e.deps {
		b[k] = v
	}
	for _, v := range e.order {
		b[v.Name] = v.liquid
	}
	for name, v := range e.aliases {
		b[name] = v.liquid
	}
	return b
}

// substScope is what ${} substitution may use after resolution.
func (e *varEngine) substScope() *scope {
	sc := &scope{values: map[string]string{}, unset: map[string]bool{}}
	for k, v := range e.builtins {
		sc.values[k] = v
	}
	for k, v := range e.deps {
		sc.values[k] = v
	}
	add := func(name string, v *Variable) {
		if v.failed {
			sc.values[name] = "" // already reported; no follow-up warnings
			return
		}
		if v.Value == nil {
			sc.unset[name] = true
			return
		}
		sc.values[name] = textOf(v.Value)
	}
	for _, v := range e.order {
		add(v.Name, v)
	}
	for name, v := range e.aliases {
		add(name, v)
	}
	return sc
}

// storedValues are the values saved with the stack for upgrade
// --reuse-values: resolved, not skipped, not vault-backed.
func (e *varEngine) storedValues() map[string]any {
	out := map[string]any{}
	for _, v := range e.order {
		if v.Skipped || v.Value == nil || v.Sensitive() {
			continue
		}
		out[v.Name] = v.Value
	}
	return out
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
