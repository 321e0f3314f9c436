package stack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// source is one file taking part in a load, for error positions.
type source struct {
	name  string   // as shown in messages
	path  string   // on the filesystem; "" when fetched from a registry
	dir   string   // base for relative paths inside the file
	lines *lineMap // rendered line → source line; nil = identity
}

func (s *source) line(n int) int {
	if s == nil || s.lines == nil {
		return n
	}
	return s.lines.source(n)
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML reads exactly one YAML document into a node tree. Errors carry
// the line yaml.v3 reports, mapped back through the Liquid line map.
func parseYAML(src *source, text []byte) (n *yaml.Node, perr *Error) {
	defer func() {
		if p := recover(); p != nil {
			n, perr = nil, &Error{File: src.name, Msg: fmt.Sprintf("invalid YAML: %v", p)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(text))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}, nil
		}
		return nil, yamlError(src, text, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: src.name, Line: src.line(extra.Line), Col: 1,
			Msg: "a stack file is one YAML document; remove the second document (---) or split the file"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(src, text, err)
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}, nil
}

func yamlError(src *source, text []byte, err error) *Error {
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		// yaml.v3 names the line where the enclosing block began; the
		// indentation reader finds the line that broke it, and why.
		if f := indentProblem(text, n, src.line); f != nil {
			return &Error{File: src.name, Line: src.line(f.line), Col: f.col, Msg: "invalid YAML: " + m[2] + "; " + f.msg}
		}
		return &Error{File: src.name, Line: src.line(n), Msg: "invalid YAML: " + m[2]}
	}
	return &Error{File: src.name, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// expander copies a node tree with aliases and merge keys (<<) resolved, so
// later stages see plain mappings. It counts the nodes it makes: a few lines
// of anchors can otherwise expand to billions of nodes.
type expander struct {
	d        *decoder
	budget   int
	active   map[*yaml.Node]bool // aliases being expanded, to catch self-reference
	exceeded bool
}

func (x *expander) expand(n *yaml.Node, path string) *yaml.Node {
	if x.exceeded || n == nil {
		return nil
	}
	x.budget--
	if x.budget < 0 {
		x.exceeded = true
		x.d.errorf(n, path, "the file expands to too many YAML nodes (aliases and merge keys are limited); simplify the anchors")
		return nil
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			x.d.errorf(n, path, "unknown YAML alias *%s", n.Value)
			return nil
		}
		if x.active[n.Alias] {
			x.d.errorf(n, path, "YAML alias *%s refers to itself", n.Value)
			return nil
		}
		x.active[n.Alias] = true
		out := x.expand(n.Alias, path)
		delete(x.active, n.Alias)
		return out
	case yaml.SequenceNode:
		c := *n
		c.Anchor = ""
		c.Content = make([]*yaml.Node, 0, len(n.Content))
		for i, item := range n.Content {
			e := x.expand(item, fmt.Sprintf("%s[%d]", path, i))
			if e == nil {
				if x.exceeded {
					return nil
				}
				continue
			}
			c.Content = append(c.Content, e)
		}
		return &c
	case yaml.MappingNode:
		return x.mapping(n, path)
	default:
		c := *n
		c.Anchor = ""
		return &c
	}
}

func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "!!merge" || k.Tag == "" || k.Style == 0)
}

func (x *expander) mapping(n *yaml.Node, path string) *yaml.Node {
	c := *n
	c.Anchor = ""
	c.Content = nil
	seen := map[string]*yaml.Node{}
	at := map[string]int{} // index in c.Content of each own key
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			merges = append(merges, v)
			continue
		}
		kk := x.expand(k, path)
		if kk == nil {
			if x.exceeded {
				return nil
			}
			continue
		}
		key := kk.Value
		vv := x.expand(v, joinPath(path, key))
		if vv == nil {
			if x.exceeded {
				return nil
			}
			vv = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: v.Line, Column: v.Column}
		}
		if kk.Kind == yaml.ScalarNode {
			if first, dup := seen[key]; dup {
				x.duplicate(first, k, joinPath(path, key))
				c.Content[at[key]], c.Content[at[key]+1] = kk, vv
				seen[key] = k
				continue
			}
			seen[key], at[key] = k, len(c.Content)
		}
		c.Content = append(c.Content, kk, vv)
	}
	// Merged keys never override the mapping's own keys; among several merge
	// sources the first one wins, as the YAML merge-key spec says.
	for _, m := range merges {
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, s := range srcs {
			e := x.expand(s, path)
			if e == nil {
				if x.exceeded {
					return nil
				}
				continue
			}
			if e.Kind != yaml.MappingNode {
				x.d.expected(s, path+".<<", "an alias of a mapping to merge")
				continue
			}
			for i := 0; i+1 < len(e.Content); i += 2 {
				k := e.Content[i]
				if _, dup := seen[k.Value]; dup {
					continue
				}
				seen[k.Value] = k
				c.Content = append(c.Content, k, e.Content[i+1])
			}
		}
	}
	return &c
}

// duplicate reports a key given twice in one mapping. Ruby's YAML parser,
// which Kontena used, kept the last value (in the first one's place), and
// files relied on that, overriding a key further down: so does this, with
// a warning, since the earlier value is silently dead text.
func (x *expander) duplicate(first, last *yaml.Node, path string) {
	x.d.warnf(last, path, "duplicate key %q: the value on line %d is used, the one on line %d is ignored; remove one of them",
		last.Value, x.d.src.line(last.Line), x.d.src.line(first.Line))
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapGet returns the value node of key in a mapping node.
func mapGet(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i].Kind == yaml.ScalarNode {
			return n.Content[i+1]
		}
	}
	return nil
}

// mapKeyNode returns the key node of key in a mapping node.
func mapKeyNode(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i].Kind == yaml.ScalarNode {
			return n.Content[i]
		}
	}
	return nil
}

// mapDelete removes key from a mapping node.
func mapDelete(n *yaml.Node, key string) {
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i].Kind == yaml.ScalarNode {
			n.Content = append(n.Content[:i:i], n.Content[i+2:]...)
			return
		}
	}
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what a node holds for "found ..." in messages.
func describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!str":
			return describeScalar(n.Value)
		default:
			return n.Value
		}
	}
	return "an alias"
}

// nodeValue converts a node to plain Go values (for variables passed to a
// dependency and for option hints).
func nodeValue(n *yaml.Node) any {
	if n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = nodeValue(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			l = append(l, nodeValue(c))
		}
		return l
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				return b
			}
		case "!!int":
			var i int
			if n.Decode(&i) == nil {
				return i
			}
		case "!!float":
			var f float64
			if n.Decode(&f) == nil {
				return f
			}
		}
		return n.Value
	}
	return nil
}
