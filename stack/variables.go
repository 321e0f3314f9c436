package stack

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Variable is one entry of the `variables` section with its resolved value.
type Variable struct {
	Name        string     `json:"name" yaml:"name"`
	Type        string     `json:"type" yaml:"type"`
	Label       string     `json:"label,omitempty" yaml:"label,omitempty"`
	Description string     `json:"description,omitempty" yaml:"description,omitempty"`
	Required    bool       `json:"required" yaml:"required"`
	Default     any        `json:"default,omitempty" yaml:"default,omitempty"`
	From        []Resolver `json:"from,omitempty" yaml:"from,omitempty"`
	To          []Setter   `json:"to,omitempty" yaml:"to,omitempty"`
	Value       any        `json:"value" yaml:"value"`
	// Secret: the file marks the value as secret. It is kept in the vault
	// (as if from/to vault: stack/<stack>/<name>), never with the stack.
	Secret bool `json:"secret,omitempty" yaml:"secret,omitempty"`
	// Origin says where Value came from: "value" (the file), "values" (-v,
	// --values-from, reused values), "default", or a resolver name.
	Origin  string `json:"origin,omitempty" yaml:"origin,omitempty"`
	Skipped bool   `json:"skipped,omitempty" yaml:"skipped,omitempty"` // only_if/skip_if said no

	opts        typeOpts
	keyNode     *yaml.Node
	valueNode   *yaml.Node // `value:` in the file
	defaultNode *yaml.Node
	onlyIf      *yaml.Node
	skipIf      *yaml.Node
	liquid      any    // what Liquid sees (booleans stay booleans)
	failed      bool   // an error was reported; dependents stay quiet
	wantPrompt  bool   // a prompt resolver was skipped for lack of a terminal
	wantGrid    string // a grid resolver (its name) was skipped for lack of a grid
}

// Resolver is one entry of a variable's `from`.
type Resolver struct {
	Name string     `json:"name" yaml:"name"`
	Hint any        `json:"hint,omitempty" yaml:"hint,omitempty"`
	node *yaml.Node // hint position
}

// Setter is one entry of a variable's `to`: env (another ${} name) or vault
// (a secret written at install).
type Setter struct {
	Name   string `json:"name" yaml:"name"`
	Target string `json:"target" yaml:"target"`
}

// Sensitive: the value comes from or goes to the vault, or the file marks
// it secret; it is never stored with the stack, nor shown.
func (v *Variable) Sensitive() bool { return v.Secret || v.VaultBacked() }

// VaultBacked reports whether the value lives in the vault; such values are
// never stored with the stack.
func (v *Variable) VaultBacked() bool {
	for _, r := range v.From {
		if r.Name == "vault" {
			return true
		}
	}
	for _, s := range v.To {
		if s.Name == "vault" {
			return true
		}
	}
	return false
}

var resolverNames = []string{"env", "file", "random_string", "random_number", "random_uuid", "interpolate",
	"evaluate", "prompt", "vault", "service_instances", "service_link", "certificates", "variable"}

var builtinNames = []string{"GRID", "STACK", "PLATFORM", "PARENT_STACK"}

// decodeVariables reads the variables section into definitions, in file order.
func (d *decoder) decodeVariables(n *yaml.Node) []*Variable {
	var out []*Variable
	if isNull(n) {
		return nil
	}
	d.mapping(n, "variables", "a mapping of variable definitions", func(name string, k, v *yaml.Node) {
		path := "variables." + name
		if contains(builtinNames, name) {
			d.errorf(k, path, "%s is a built-in variable and cannot be declared", name)
			return
		}
		if !validVarName(name) {
			d.expectedFound(k, path, "a variable name of letters, digits, _ and -", describeScalar(name))
			return
		}
		if vr := d.decodeVariable(name, k, v, path); vr != nil {
			out = append(out, vr)
		}
	})
	return out
}

func validVarName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'):
		case (r >= '0' && r <= '9') || r == '-':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (d *decoder) decodeVariable(name string, k, n *yaml.Node, path string) *Variable {
	v := &Variable{Name: name, Type: "string", Required: true, keyNode: k}
	if isNull(n) {
		v.opts = defaultTypeOpts(v.Type)
		return v
	}
	if n.Kind != yaml.MappingNode {
		d.expected(n, path, "a mapping like {type: string, default: ...}")
		return nil
	}
	if tn := mapGet(n, "type"); !isNull(tn) {
		t, _ := scalarText(tn)
		// Old files wrote Ruby symbols (type: :string).
		t = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(t), ":"))
		if _, ok := typeOptionKeys[t]; !ok {
			d.expected(tn, path+".type", "one of string, integer, boolean, enum, uri, array")
			return nil
		}
		v.Type = t
	}
	v.opts = defaultTypeOpts(v.Type)
	known := append(append([]string(nil), commonVariableKeys...), typeOptionKeys[v.Type]...)
	d.mapping(n, path, "a mapping", func(key string, kn, vn *yaml.Node) {
		kpath := path + "." + key
		switch key {
		case "type":
		case "label":
			v.Label, _ = d.str(vn, kpath)
		case "description":
			v.Description, _ = d.str(vn, kpath)
		case "required":
			if b, ok := d.boolean(vn, kpath); ok {
				v.Required = b
			}
		case "default":
			v.defaultNode = vn
			v.Default = nodeValue(vn)
		case "value":
			v.valueNode = vn
		case "from":
			v.From = d.decodeResolvers(vn, kpath, name)
		case "to":
			v.To = d.decodeSetters(vn, kpath, name)
		case "secret":
			if b, ok := d.boolean(vn, kpath); ok {
				v.Secret = b
			}
		case "only_if":
			v.onlyIf = vn
		case "skip_if":
			v.skipIf = vn
		case "in":
			if l, ok := d.strList(vn, kpath); ok {
				v.opts.in = l
			}
		default:
			if contains(typeOptionKeys[v.Type], key) {
				d.parseTypeOption(&v.opts, v.Type, key, vn, kpath)
				return
			}
			if key == "as" || contains(allTypeOptionKeys(), key) {
				d.warnf(kn, kpath, "%q is not an option of type %s; ignored", key, v.Type)
				return
			}
			d.warnf(kn, kpath, "%s; ignored", unknownKeyMsg("variable option", key, known))
		}
	})
	if v.Label == "" {
		v.Label = name
	}
	return v
}

func allTypeOptionKeys() []string {
	var all []string
	for _, ks := range typeOptionKeys {
		all = append(all, ks...)
	}
	sort.Strings(all)
	return all
}

// decodeResolvers reads `from`: a name, a list of names or {name: hint}
// entries, or an ordered mapping of name → hint.
func (d *decoder) decodeResolvers(n *yaml.Node, path, varName string) []Resolver {
	var out []Resolver
	add := func(name string, hint, at *yaml.Node) {
		if !contains(resolverNames, name) {
			d.errorf(at, path, "%s (resolvers are %s)", unknownKeyMsg("resolver", name, resolverNames), strings.Join(resolverNames, ", "))
			return
		}
		r := Resolver{Name: name, Hint: nodeValue(hint), node: hint}
		if hint == nil {
			r.node = at
		}
		if name == "env" && r.Hint == nil {
			r.Hint = varName
		}
		out = append(out, r)
	}
	d.eachNamed(n, add, func(item *yaml.Node, i int) {
		d.expected(item, fmt.Sprintf("%s[%d]", path, i), "a resolver name or {resolver: hint}")
	}, func() {
		d.expected(n, path, "a resolver name, a list or a mapping of resolvers")
	})
	return out
}

// eachNamed walks the forms `from` and `to` accept: a name, a list of names
// or {name: hint} maps, or a {name: hint} map, calling add for each name.
// badItem (nil: skip) is called for a list item of another kind, bad for a
// node of another kind.
func (d *decoder) eachNamed(n *yaml.Node, add func(name string, hint, at *yaml.Node), badItem func(item *yaml.Node, i int), bad func()) {
	pairs := func(m *yaml.Node) {
		for j := 0; j+1 < len(m.Content); j += 2 {
			add(m.Content[j].Value, m.Content[j+1], m.Content[j])
		}
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if s, ok := scalarText(n); ok {
			add(s, nil, n)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			switch item.Kind {
			case yaml.ScalarNode:
				add(item.Value, nil, item)
			case yaml.MappingNode:
				pairs(item)
			default:
				if badItem != nil {
					badItem(item, i)
				}
			}
		}
	case yaml.MappingNode:
		pairs(n)
	default:
		bad()
	}
}

// decodeSetters reads `to`: env (names for ${}) and vault (a secret name).
func (d *decoder) decodeSetters(n *yaml.Node, path, varName string) []Setter {
	var out []Setter
	add := func(name string, hint, at *yaml.Node) {
		if name != "env" && name != "vault" {
			d.errorf(at, path, "%s (setters are env and vault)", unknownKeyMsg("setter", name, []string{"env", "vault"}))
			return
		}
		targets := []string{varName}
		if !isNull(hint) {
			switch hint.Kind {
			case yaml.ScalarNode:
				targets = []string{hint.Value}
			case yaml.SequenceNode:
				l, _ := d.strList(hint, path+"."+name)
				targets = l
			default:
				d.expected(hint, path+"."+name, "a name or a list of names")
				return
			}
		}
		for _, t := range targets {
			if name == "env" && !validVarName(t) {
				d.expectedFound(hint, path+"."+name, "a variable name", describeScalar(t))
				continue
			}
			out = append(out, Setter{Name: name, Target: t})
		}
	}
	d.eachNamed(n, add, nil, func() { d.expected(n, path, "env or vault") })
	return out
}
