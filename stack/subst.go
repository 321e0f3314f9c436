package stack

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// scope is what ${NAME} may refer to during substitution.
type scope struct {
	values map[string]string // declared names with a value
	unset  map[string]bool   // declared names without a value: substituted as ""
	// env is consulted for names the stack does not declare; only docker-compose
	// files get one, because that is how compose itself substitutes.
	env func(string) (string, bool)
	// keepUnknown leaves undeclared names and $$ as written (the variables
	// section is first substituted with the built-ins only).
	keepUnknown bool
}

// substituteTree replaces ${VAR} and $VAR in every scalar (keys too) of an
// expanded tree. Working on parsed scalars rather than on the text means a
// value can never break the YAML around it (image: x:${tag} with a tag
// containing ": " or "#" stays one string) and errors point at the scalar.
// Plain scalars are re-typed afterwards, so "instances: $N" is a number.
func (d *decoder) substituteTree(n *yaml.Node, path string, sc *scope) {
	if n == nil {
		return
	}
	switch n.Kind {
	case yaml.ScalarNode:
		d.substituteScalar(n, path, sc)
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.substituteTree(c, fmt.Sprintf("%s[%d]", path, i), sc)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			d.substituteScalar(k, path, sc)
			d.substituteTree(n.Content[i+1], joinPath(path, k.Value), sc)
		}
	}
}

func (d *decoder) substituteScalar(n *yaml.Node, path string, sc *scope) {
	if n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "$") {
		return
	}
	out, problems := substitute(n.Value, sc)
	for _, p := range problems {
		if p.warn {
			d.warnf(n, path, "%s", p.msg)
		} else {
			d.errorf(n, path, "%s", p.msg)
		}
	}
	if out == n.Value {
		return
	}
	n.Value = out
	if n.Style&(yaml.TaggedStyle|yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
		n.Tag = "" // let yaml.v3 resolve the new text: "3" → !!int, "" → !!null
	}
}

type substProblem struct {
	msg  string
	warn bool
}

// substitute expands one string. $$ is a literal $; $ followed by anything
// that is not a name or { is kept as is.
func substitute(s string, sc *scope) (string, []substProblem) {
	var b strings.Builder
	var problems []substProblem
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			if sc.keepUnknown {
				b.WriteString("$$")
			} else {
				b.WriteByte('$')
			}
			i += 2
		case next == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 && unclosedName(s[i+2:]) != "" {
				val, n, p := unclosedRef(s, i, sc)
				problems = append(problems, p...)
				b.WriteString(val)
				i += n
				continue
			}
			if end < 0 {
				problems = append(problems, substProblem{msg: fmt.Sprintf("unclosed ${ in %s (write $$ for a literal $)", describeScalar(s))})
				b.WriteString(s[i:])
				i = len(s)
				continue
			}
			expr := s[i+2 : i+2+end]
			val, p := lookupExpr(expr, s[i:i+3+end], sc)
			if p != nil {
				problems = append(problems, *p)
			}
			b.WriteString(val)
			i += 3 + end
		case isNameStart(next):
			j := i + 1
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			val, p := lookupExpr(s[i+1:j], s[i:j], sc)
			if p != nil {
				problems = append(problems, *p)
			}
			b.WriteString(val)
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), problems
}

// lookupExpr resolves NAME or NAME:-default.
func lookupExpr(expr, orig string, sc *scope) (string, *substProblem) {
	if sc.keepUnknown {
		if v, ok := sc.values[expr]; ok {
			return v, nil
		}
		return orig, nil
	}
	if expr == "" {
		return "", &substProblem{msg: "empty ${} (write $$ for a literal $)"}
	}
	name, def, hasDef := expr, "", false
	if _, declared := sc.values[expr]; !declared && !sc.unset[expr] {
		if i := strings.Index(expr, ":-"); i > 0 {
			name, def, hasDef = expr[:i], expr[i+2:], true
		}
	}
	if v, ok := sc.values[name]; ok {
		if v == "" && hasDef {
			return def, nil
		}
		return v, nil
	}
	if sc.unset[name] {
		if hasDef {
			return def, nil
		}
		return "", &substProblem{warn: true, msg: fmt.Sprintf("variable %s has no value; substituted an empty string", name)}
	}
	if sc.env != nil {
		if v, ok := sc.env(name); ok && !(v == "" && hasDef) {
			return v, nil
		}
	}
	if hasDef {
		return def, nil
	}
	return "", &substProblem{msg: fmt.Sprintf("undeclared variable %q in %s: declare it under variables (or write $$ for a literal $)", name, orig)}
}

// unclosedName is the name an unclosed ${ is followed by.
func unclosedName(s string) string {
	j := 0
	for j < len(s) && isNameChar(s[j]) {
		j++
	}
	return s[:j]
}

// unclosedRef substitutes "${NAME" at s[i:] when no } follows, as Kontena
// did: its CLI matched references with /\$\{?\w+\}?/ and stripped the
// braces, so the closing brace was optional and "${tag" read as "${tag}"
// (a line cut short, or "image: app:${tag" typed in a hurry, deployed).
// Anything after the name stays text. It returns the value, the length
// read and the problems: a warning naming the proper form, or the error
// of an undeclared name.
func unclosedRef(s string, i int, sc *scope) (string, int, []substProblem) {
	name := unclosedName(s[i+2:])
	orig := "${" + name
	val, p := lookupExpr(name, orig, sc)
	if p != nil {
		return val, len(orig), []substProblem{*p}
	}
	if sc.keepUnknown && val == orig {
		return val, len(orig), nil // left for the full substitution
	}
	return val, len(orig), []substProblem{{warn: true,
		msg: fmt.Sprintf("unclosed ${ in %s: read as ${%s}, as Kontena did; write ${%s} (or $$ for a literal $)", describeScalar(s), name, name)}}
}
