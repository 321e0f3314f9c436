package stack

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/osteele/liquid/render"
)

// check finds undefined variables and filters before rendering, in every
// branch, with their names and positions. (osteele/liquid's own strict mode
// neither names the variable nor tells an undefined name from a declared
// variable without a value, which must render as empty.)
func (r *liquidRenderer) check(src *source, text string, root render.Node, bindings map[string]any) Errors {
	c := &liquidChecker{r: r, src: src, lines: strings.Split(text, "\n"), bindings: bindings, defined: map[string]bool{}}
	c.collectDefined(root)
	c.walk(root, nil)
	return c.errs
}

type liquidChecker struct {
	r        *liquidRenderer
	src      *source
	lines    []string
	bindings map[string]any
	defined  map[string]bool // assign/capture targets anywhere in the file
	errs     Errors
	seen     map[string]bool
}

var (
	assignRe = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=(.*)$`)
	forRe    = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_-]*)\s+in\s+(.*)$`)
)

func (c *liquidChecker) collectDefined(n render.Node) {
	switch n := n.(type) {
	case *render.SeqNode:
		for _, ch := range n.Children {
			c.collectDefined(ch)
		}
	case *render.TagNode:
		if n.Name == "assign" {
			if m := assignRe.FindStringSubmatch(n.Args); m != nil {
				c.defined[m[1]] = true
			}
		}
	case *render.BlockNode:
		if n.Name == "__capture" {
			c.defined[strings.TrimSpace(n.Args)] = true
		}
		for _, ch := range n.Body {
			c.collectDefined(ch)
		}
		for _, cl := range n.Clauses {
			c.collectDefined(cl)
		}
	}
}

func (c *liquidChecker) walk(n render.Node, local []string) {
	switch n := n.(type) {
	case *render.SeqNode:
		for _, ch := range n.Children {
			c.walk(ch, local)
		}
	case *render.ObjectNode:
		c.expr(n.Args, n.Source, n.SourceLoc.LineNo, local)
	case *render.TagNode:
		switch n.Name {
		case "assign":
			if m := assignRe.FindStringSubmatch(n.Args); m != nil {
				c.expr(m[2], n.Source, n.SourceLoc.LineNo, local)
			}
		case "cycle", "include":
			c.expr(n.Args, n.Source, n.SourceLoc.LineNo, local)
		}
	case *render.BlockNode:
		switch n.Name {
		case "raw", "comment":
			return
		case "for", "tablerow":
			inner := local
			if m := forRe.FindStringSubmatch(n.Args); m != nil {
				c.exprIn(m[2], n.Source, n.SourceLoc.LineNo, local, true)
				inner = append(append([]string(nil), local...), m[1], "forloop", "tablerowloop")
			}
			for _, ch := range n.Body {
				c.walk(ch, inner)
			}
			for _, cl := range n.Clauses {
				c.walk(cl, local)
			}
			return
		case "__capture", "else":
		default:
			c.expr(n.Args, n.Source, n.SourceLoc.LineNo, local)
		}
		for _, ch := range n.Body {
			c.walk(ch, local)
		}
		for _, cl := range n.Clauses {
			c.walk(cl, local)
		}
	}
}

// expr reports the undefined root names and filters of one expression.
func (c *liquidChecker) expr(args, tokenSrc string, line int, local []string) {
	c.exprIn(args, tokenSrc, line, local, false)
}

// exprIn checks an expression; loop says it is the collection of a for
// loop, the only place a range may be: anywhere else (or through a filter)
// osteele/liquid turns (1..n) into an array of n elements at once.
func (c *liquidChecker) exprIn(args, tokenSrc string, line int, local []string, loop bool) {
	refs, hasRange, hasPipe := liquidScan(args)
	if hasRange && (!loop || hasPipe) {
		c.report(line, tokenSrc, args, 0, "a range (a..b) can only be looped over directly, as in {% for i in (1..n) %}")
	}
	for _, ref := range refs {
		if len(c.errs) >= 100 {
			return
		}
		name := ref.name
		if ref.filter {
			if !c.r.filters[name] {
				c.report(line, tokenSrc, args, ref.off, fmt.Sprintf("undefined filter %q", name))
			}
			continue
		}
		if _, ok := c.bindings[name]; ok || c.defined[name] || contains(local, name) {
			continue
		}
		msg := fmt.Sprintf("undefined variable %q", name)
		var known []string
		for k := range c.bindings {
			known = append(known, k)
		}
		if s := closest(name, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else {
			sort.Strings(known)
			msg += "; declare it under variables"
		}
		c.report(line, tokenSrc, args, ref.off, msg)
	}
}

func (c *liquidChecker) report(line int, tokenSrc, args string, off int, msg string) {
	if len(c.errs) >= 100 {
		return // enough to fix; more would only cost time
	}
	col := 0
	if line >= 1 && line <= len(c.lines) {
		if i := strings.Index(c.lines[line-1], firstLine(tokenSrc)); i >= 0 {
			col = i + 1
			if j := strings.Index(tokenSrc, args); j >= 0 && !strings.Contains(tokenSrc[:j+off], "\n") {
				col += j + off
			}
		}
	}
	key := fmt.Sprintf("%d:%d:%s", line, col, msg)
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	c.errs = append(c.errs, &Error{File: c.src.name, Line: line, Col: col, Msg: "Liquid: " + msg})
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

type liquidRef struct {
	name   string
	off    int
	filter bool
}

var liquidKeywords = map[string]bool{"and": true, "or": true, "not": true, "contains": true, "true": true,
	"false": true, "nil": true, "null": true, "empty": true, "blank": true, "in": true, "reversed": true}

// liquidRefs lists the root variable names and the filter names of a Liquid
// expression: identifiers not after '.', not keyword arguments (name:), and
// not inside string literals.
func liquidRefs(s string) []liquidRef {
	refs, _, _ := liquidScan(s)
	return refs
}

// liquidScan also reports whether the expression has a range (a..b) and a
// filter (|).
func liquidScan(s string) (out []liquidRef, hasRange, hasPipe bool) {
	prev := "" // previous significant token
	for i := 0; i < len(s); {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			i++
		case ch == '\'' || ch == '"':
			end := strings.IndexByte(s[i+1:], ch)
			if end < 0 {
				return out, hasRange, hasPipe
			}
			i += end + 2
			prev = "lit"
		case ch >= '0' && ch <= '9':
			for i < len(s) && (s[i] >= '0' && s[i] <= '9' || (s[i] == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9')) {
				i++
			}
			prev = "lit"
		case isNameStart(ch):
			start := i
			for i < len(s) && (isNameChar(s[i]) || s[i] == '-') {
				i++
			}
			if i < len(s) && s[i] == '?' {
				i++
			}
			name := s[start:i]
			switch {
			case prev == ".":
			case prev == "|":
				out = append(out, liquidRef{name: name, off: start, filter: true})
			case i < len(s) && s[i] == ':':
			case liquidKeywords[name]:
			default:
				out = append(out, liquidRef{name: name, off: start})
			}
			prev = "ident"
		case ch == '.' && i+1 < len(s) && s[i+1] == '.':
			i += 2
			prev = ".."
			hasRange = true
		default:
			prev = string(ch)
			hasPipe = hasPipe || ch == '|'
			i++
		}
	}
	return out, hasRange, hasPipe
}
