package stack

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// lookupFunc returns a variable's value and whether the name is declared.
type lookupFunc func(name string) (any, bool)

// included evaluates only_if and skip_if. only_if needs every term true;
// skip_if skips when any term is true (both as Kontena did). ok=false when a
// condition is malformed or names an unknown variable (already reported).
func (d *decoder) included(onlyIf, skipIf *yaml.Node, path string, lookup lookupFunc) (include, ok bool) {
	ok = true
	if skipIf != nil && !isNull(skipIf) {
		terms, good := d.condTerms(skipIf, path+".skip_if", lookup)
		ok = ok && good
		for _, t := range terms {
			if t {
				return false, ok
			}
		}
	}
	if onlyIf != nil && !isNull(onlyIf) {
		terms, good := d.condTerms(onlyIf, path+".only_if", lookup)
		ok = ok && good
		for _, t := range terms {
			if !t {
				return false, ok
			}
		}
	}
	return true, ok
}

func (d *decoder) condTerms(n *yaml.Node, path string, lookup lookupFunc) ([]bool, bool) {
	var out []bool
	ok := true
	truthy := func(name string, at *yaml.Node) {
		v, declared := lookup(name)
		if !declared {
			d.expectedFound(at, path, "the name of a declared variable", describeScalar(name))
			ok = false
			return
		}
		out = append(out, isTruthy(v))
	}
	mapTerms := func(m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			name := m.Content[i].Value
			v, declared := lookup(name)
			if !declared {
				d.expectedFound(m.Content[i], path, "the name of a declared variable", describeScalar(name))
				ok = false
				continue
			}
			res, err := matchCondition(v, m.Content[i+1])
			if err != nil {
				d.errorf(m.Content[i+1], path+"."+name, "%v", err)
				ok = false
				continue
			}
			out = append(out, res)
		}
	}
	switch n.Kind {
	case yaml.ScalarNode:
		truthy(n.Value, n)
	case yaml.SequenceNode:
		for i, item := range n.Content {
			switch item.Kind {
			case yaml.ScalarNode:
				truthy(item.Value, item)
			case yaml.MappingNode:
				mapTerms(item)
			default:
				d.expected(item, fmt.Sprintf("%s[%d]", path, i), "a variable name or {variable: value}")
				ok = false
			}
		}
	case yaml.MappingNode:
		mapTerms(n)
	default:
		d.expected(n, path, "a variable name, a list of them, or {variable: value}")
		ok = false
	}
	return out, ok
}

// isTruthy is Kontena's rule: anything but null, false and "false".
func isTruthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != "false"
	}
	return true
}

var conditionOps = []string{"eq", "ne", "lt", "lte", "gt", "gte", "start_with", "end_with", "contain", "any_of"}

// matchCondition compares a variable value with the condition's value, or
// applies the operators of a mapping ({gt: 5, lte: 10}).
func matchCondition(v any, cond *yaml.Node) (bool, error) {
	if cond.Kind != yaml.MappingNode {
		want := nodeValue(cond)
		if want == nil || v == nil {
			return want == nil && v == nil, nil
		}
		return textOf(v) == textOf(want), nil
	}
	for i := 0; i+1 < len(cond.Content); i += 2 {
		op, arg := cond.Content[i].Value, nodeValue(cond.Content[i+1])
		res, err := applyOp(op, v, arg)
		if err != nil {
			return false, err
		}
		if !res {
			return false, nil
		}
	}
	return true, nil
}

func applyOp(op string, v, arg any) (bool, error) {
	switch op {
	case "eq":
		return textOf(v) == textOf(arg) && (v == nil) == (arg == nil), nil
	case "ne":
		return textOf(v) != textOf(arg) || (v == nil) != (arg == nil), nil
	case "lt", "lte", "gt", "gte":
		if v == nil {
			return false, nil
		}
		c := compareValues(v, arg)
		switch op {
		case "lt":
			return c < 0, nil
		case "lte":
			return c <= 0, nil
		case "gt":
			return c > 0, nil
		default:
			return c >= 0, nil
		}
	case "start_with":
		return v != nil && strings.HasPrefix(textOf(v), textOf(arg)), nil
	case "end_with":
		return v != nil && strings.HasSuffix(textOf(v), textOf(arg)), nil
	case "contain":
		if l, ok := v.([]any); ok {
			for _, e := range l {
				if textOf(e) == textOf(arg) {
					return true, nil
				}
			}
			return false, nil
		}
		return v != nil && strings.Contains(textOf(v), textOf(arg)), nil
	case "any_of":
		var opts []string
		switch a := arg.(type) {
		case []any:
			for _, e := range a {
				opts = append(opts, textOf(e))
			}
		default:
			opts = strings.Split(textOf(a), ",")
		}
		return v != nil && contains(opts, textOf(v)), nil
	}
	return false, fmt.Errorf("%s (operators are %s)", unknownKeyMsg("condition operator", op, conditionOps), strings.Join(conditionOps, ", "))
}

// compareValues compares numerically when both sides are numbers, else as text.
func compareValues(a, b any) int {
	fa, errA := strconv.ParseFloat(textOf(a), 64)
	fb, errB := strconv.ParseFloat(textOf(b), 64)
	if errA == nil && errB == nil {
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	return strings.Compare(textOf(a), textOf(b))
}
