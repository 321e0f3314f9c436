package stack

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// runResolver runs one `from` entry. A nil result means "no value here, try
// the next one".
func (e *varEngine) runResolver(v *Variable, r Resolver) (any, error) {
	l := e.ly.l
	switch r.Name {
	case "env":
		var names []string
		switch h := r.Hint.(type) {
		case []any:
			for _, x := range h {
				names = append(names, textOf(x))
			}
		default:
			names = []string{textOf(h)}
		}
		for _, n := range names {
			if val, ok := l.env(n); ok {
				return val, nil
			}
		}
		return nil, nil
	case "file":
		return e.fileResolver(r.Hint)
	case "random_string":
		return e.randomString(r.Hint)
	case "random_number":
		return e.randomNumber(r.Hint)
	case "random_uuid":
		return l.randomUUID()
	case "interpolate":
		tmpl, ok := r.Hint.(string)
		if !ok {
			return nil, fmt.Errorf("expected a template string like \"${a}-${b}\", found %s", foundValue(r.Hint))
		}
		return expandRefs(tmpl, e.lookupErr)
	case "evaluate":
		tmpl := textOf(r.Hint)
		if tmpl == "" {
			return nil, errors.New("expected a calculation like \"${a} * 2\"")
		}
		s, err := expandRefs(tmpl, e.lookupErr)
		if err != nil {
			return nil, err
		}
		return evalArithmetic(s)
	case "variable":
		name := textOf(r.Hint)
		val, declared, err := e.lookupErr(name)
		if err != nil {
			return nil, err
		}
		if !declared {
			return nil, fmt.Errorf("variable %q is not declared", name)
		}
		return val, nil
	case "prompt":
		return e.prompt(v, r.Hint)
	case "vault":
		name := textOf(r.Hint)
		if name == "" {
			return nil, errors.New("expected the name of a vault secret")
		}
		g, err := e.grid(v, "vault")
		if err != nil {
			return nil, err
		}
		val, found, err := g.VaultRead(l.ctx, name)
		if err != nil {
			return nil, e.gridErr(v, "vault", err)
		}
		if !found {
			return nil, nil
		}
		return val, nil
	case "service_instances":
		return e.serviceInstances(v, r.Hint)
	case "service_link":
		return e.serviceLink(v, r.Hint)
	case "certificates":
		return e.certificates(v, r.Hint)
	}
	return nil, fmt.Errorf("unknown resolver %q", r.Name)
}

func (e *varEngine) fileResolver(hint any) (any, error) {
	path, ignore := "", false
	switch h := hint.(type) {
	case string:
		path = h
	case map[string]any:
		path = textOf(h["path"])
		ignore = isTruthy(h["ignore_errors"])
	}
	if path == "" {
		return nil, errors.New("expected a path, or {path: ..., ignore_errors: true}")
	}
	if e.ly.src.path == "" {
		return nil, fmt.Errorf("a stack from a registry cannot read the local file %s", path)
	}
	b, err := e.ly.l.readFile(e.ly.resolvePath(path))
	if err != nil {
		if ignore {
			return nil, nil
		}
		return nil, err
	}
	return string(b), nil
}

func (e *varEngine) randomString(hint any) (any, error) {
	length, charset := 32, "alphanumeric"
	switch h := hint.(type) {
	case int:
		length = h
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(h))
		if err != nil {
			return nil, fmt.Errorf("expected a length or {length: N, charset: NAME}, found %s", foundValue(h))
		}
		length = n
	case map[string]any:
		if l, ok := h["length"]; ok {
			n, ok := l.(int)
			if !ok {
				return nil, fmt.Errorf("length: expected a whole number, found %s", foundValue(l))
			}
			length = n
		}
		if c, ok := h["charset"]; ok && c != nil {
			charset = textOf(c)
		}
	case nil, bool:
	default:
		return nil, fmt.Errorf("expected a length or {length: N, charset: NAME}, found %s", foundValue(h))
	}
	if length < 1 || length > 65536 {
		return nil, fmt.Errorf("length: expected 1 to 65536, found %d", length)
	}
	return e.ly.l.randomString(length, charset)
}

func (e *varEngine) randomNumber(hint any) (any, error) {
	h, ok := hint.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("expected {min: N, max: M}, found %s", foundValue(hint))
	}
	lo, okLo := h["min"].(int)
	hi, okHi := h["max"].(int)
	if !okLo || !okHi {
		return nil, errors.New("expected whole numbers in {min: N, max: M}")
	}
	if lo > hi {
		return nil, fmt.Errorf("min %d is larger than max %d", lo, hi)
	}
	return e.ly.l.randomInt(lo, hi)
}

// grid returns the grid resolver, or errOffline when there is none.
// Offline, as in Kontena's `stack validate`, a grid resolver gives no
// value: the next resolver or the default applies, and only a required
// variable left with nothing is an error (finish says it needed a grid).
func (e *varEngine) grid(v *Variable, resolver string) (GridResolver, error) {
	g := e.ly.l.opts.GridResolver
	if g == nil {
		return nil, e.gridErr(v, resolver, ErrNeedsGrid)
	}
	return g, nil
}

// errOffline is a grid resolver's "no value: no grid to ask".
var errOffline = errors.New("offline")

func (e *varEngine) gridErr(v *Variable, resolver string, err error) error {
	if errors.Is(err, ErrNeedsGrid) {
		if v.wantGrid == "" {
			v.wantGrid = resolver
		}
		return errOffline
	}
	return err
}

// offlineErr is why a required variable whose grid resolver had no grid
// to ask has no value.
func (e *varEngine) offlineErr(v *Variable) string {
	return fmt.Sprintf("from %s: the %s resolver needs a grid (connect to a grid, or pass the value with -v %s%s=VALUE)",
		v.wantGrid, v.wantGrid, e.ly.valuePrefix, v.Name)
}

func (e *varEngine) serviceInstances(v *Variable, hint any) (any, error) {
	svc := textOf(hint)
	if svc == "" {
		return nil, errors.New("expected a service name")
	}
	st := e.builtins["STACK"]
	if i := strings.IndexByte(svc, '/'); i >= 0 {
		st, svc = svc[:i], svc[i+1:]
	}
	g, err := e.grid(v, "service_instances")
	if err != nil {
		return nil, err
	}
	n, found, err := g.ServiceInstances(e.ly.l.ctx, st, svc)
	if err != nil {
		return nil, e.gridErr(v, "service_instances", err)
	}
	if !found {
		return nil, nil
	}
	return n, nil
}

func (e *varEngine) serviceLink(v *Variable, hint any) (any, error) {
	h, _ := hint.(map[string]any)
	if h == nil {
		h = map[string]any{}
	}
	g, err := e.grid(v, "service_link")
	if err != nil {
		return nil, err
	}
	all, err := g.Services(e.ly.l.ctx)
	if err != nil {
		return nil, e.gridErr(v, "service_link", err)
	}
	var choices []Choice
	for _, s := range all {
		if img := textOf(h["image"]); img != "" && !strings.Contains(s.Image, img) {
			continue
		}
		if name := textOf(h["name"]); name != "" && !strings.Contains(s.Name, name) {
			continue
		}
		choices = append(choices, Choice{Value: s.Link(), Label: s.Link(), Description: s.Image})
	}
	if len(choices) == 0 {
		return nil, nil
	}
	def := textOf(v.Default)
	p := e.ly.prompter
	if p == nil {
		// Without a terminal pick only what is unambiguous.
		for _, c := range choices {
			if c.Value == def {
				return def, nil
			}
		}
		if len(choices) == 1 {
			return choices[0].Value, nil
		}
		v.wantPrompt = true
		return nil, nil
	}
	msg := textOf(h["prompt"])
	if msg == "" {
		msg = "Select " + v.Label
	}
	if !v.Required {
		choices = append([]Choice{{Value: "", Label: "<none>"}}, choices...)
	}
	got, err := p.Choose(e.ly.l.ctx, Question{Variable: v.Name, Message: msg, Description: v.Description, Default: def}, choices, false)
	if err != nil {
		return nil, e.promptErr(v, err)
	}
	if len(got) == 0 || got[0] == "" {
		return nil, nil
	}
	return got[0], nil
}

func (e *varEngine) certificates(v *Variable, hint any) (any, error) {
	g, err := e.grid(v, "certificates")
	if err != nil {
		return nil, err
	}
	subjects, err := g.Certificates(e.ly.l.ctx)
	if err != nil {
		return nil, e.gridErr(v, "certificates", err)
	}
	if len(subjects) == 0 {
		return nil, nil
	}
	p := e.ly.prompter
	if p == nil {
		v.wantPrompt = true
		return nil, nil
	}
	msg := textOf(hint)
	if msg == "" {
		msg = "Select SSL certificates"
	}
	choices := make([]Choice, len(subjects))
	for i, s := range subjects {
		choices[i] = Choice{Value: s, Label: s}
	}
	got, err := p.Choose(e.ly.l.ctx, Question{Variable: v.Name, Message: msg, Description: v.Description, Default: textOf(v.Default)}, choices, true)
	if err != nil {
		return nil, e.promptErr(v, err)
	}
	if len(got) == 0 {
		return nil, nil
	}
	out := make([]any, len(got))
	for i, s := range got {
		out[i] = s
	}
	return out, nil
}

// prompt asks on the terminal; without one it records that a prompt was
// wanted so the final error can say how to pass the value instead.
func (e *varEngine) prompt(v *Variable, hint any) (any, error) {
	p := e.ly.prompter
	if p == nil {
		v.wantPrompt = true
		return nil, nil
	}
	msg, _ := hint.(string)
	if msg == "" {
		msg = v.Label
	}
	def := v.Default
	if d, ok := e.ly.defaults[v.Name]; ok {
		def = d
	}
	q := Question{Variable: v.Name, Message: msg, Description: v.Description, Default: textOf(def),
		Secret: strings.Contains(strings.ToLower(v.Name), "pass")}
	ctx := e.ly.l.ctx
	switch v.Type {
	case "enum":
		got, err := p.Choose(ctx, q, v.opts.choices, false)
		if err != nil {
			return nil, e.promptErr(v, err)
		}
		if len(got) == 0 {
			return nil, nil
		}
		return got[0], nil
	case "boolean":
		got, err := p.Choose(ctx, q, []Choice{{Value: "true", Label: "yes"}, {Value: "false", Label: "no"}}, false)
		if err != nil {
			return nil, e.promptErr(v, err)
		}
		if len(got) == 0 {
			return nil, nil
		}
		return got[0], nil
	}
	ans, err := p.Ask(ctx, q)
	if err != nil {
		return nil, e.promptErr(v, err)
	}
	if ans == "" {
		return nil, nil
	}
	return ans, nil
}

func (e *varEngine) promptErr(v *Variable, err error) error {
	if errors.Is(err, ErrNotTerminal) {
		v.wantPrompt = true
		return nil
	}
	return err
}

// resolvePath makes a path from the file relative to the file's directory.
func (ly *layer) resolvePath(p string) string {
	if filepath.IsAbs(p) || ly.src.dir == "" {
		return p
	}
	return filepath.Join(ly.src.dir, p)
}
