package stack

import (
	"fmt"
	"regexp"
	"strings"
)

// yaml.v3 reports most indentation mistakes as "did not find expected key"
// at the line where the enclosing block began (often services:, far above
// the mistake), and a tab as a character that "cannot start any token".
// indentProblem re-reads the text's block structure line by line to find
// the line where it broke and say how to fix it. It only knows block
// style: on a flow collection or quoted string spanning lines it gives up,
// and a finding before yaml's line (which is never after the mistake) is
// discarded as a misreading, leaving yaml's own message.

// indentFinding is where the block structure broke, and why.
type indentFinding struct {
	line, col int // 1-based, in the parsed text
	msg       string
}

// indentLevel is an open block collection: its entries start at col.
type indentLevel struct {
	col  int
	seq  bool // entries are "- " items, else keys
	last int  // line of its latest entry
}

// indentLine is what the latest line with content left open.
type indentLine struct {
	line, col int  // col: where its last key or item starts
	opens     bool // "key:" or "-" with nothing after: a block may follow
	item      bool
}

type indentScan struct {
	lineOf func(int) int // a line of the text as the user knows it (Liquid)
	levels []indentLevel
	prev   indentLine
	gaveUp bool
	// A block scalar (| or >): its parent's indentation (-1 outside one),
	// the indentation its first line set (0 before it, -1 when given by an
	// indicator like |2) and where it started.
	block, blockIndent, blockFrom int
	// A value on a line of its own, and whether it looks like a key that
	// lacks the space after its colon (image:nginx).
	ownValue int
	noSpace  string
}

func indentProblem(text []byte, from int, lineOf func(int) int) *indentFinding {
	s := &indentScan{block: -1, lineOf: lineOf}
	for i, raw := range strings.Split(string(text), "\n") {
		f := s.line(i+1, raw)
		if s.gaveUp || (f != nil && f.line < from) {
			return nil
		}
		if f != nil {
			return f
		}
	}
	return nil
}

type lineKind int

const (
	kindScalar lineKind = iota
	kindKey
	kindItem
)

// line reads one line; it returns the problem if the structure breaks here.
func (s *indentScan) line(n int, raw string) *indentFinding {
	raw = strings.TrimRight(raw, " \r")
	body := strings.TrimLeft(raw, " ")
	c := len(raw) - len(body)
	if in, f := s.blockLine(n, c, body); in {
		return f
	}
	switch {
	case body == "" || body[0] == '#':
		return nil
	case body[0] == '\t':
		return &indentFinding{line: n, col: c + 1, msg: "this line is indented with a tab; YAML indents with spaces only: replace the tab with spaces"}
	case c == 0 && (strings.HasPrefix(body, "---") || strings.HasPrefix(body, "...") || body[0] == '%'):
		s.levels, s.prev = nil, indentLine{}
		return nil
	case body == "?" || body == ":" || strings.HasPrefix(body, "? ") || strings.HasPrefix(body, ": "):
		s.gaveUp = true // complex keys: beyond this reader
		return nil
	}
	kind, _, _ := classifyLine(body)
	if kind == kindScalar && opensBlock(body) {
		return nil // an anchor or tag alone: it belongs to the node below
	}
	if f := s.place(n, c, kind); f != nil {
		return f
	}
	if kind == kindScalar {
		// A value on its own line, or the next line of one: the key above
		// stays the line to compare with, and holds a block scalar.
		if s.ownValue == n && noSpaceKeyRe.MatchString(body) {
			s.noSpace = body
		}
		s.value(s.prev.col, body)
		return nil
	}
	s.entry(n, c, body)
	return nil
}

// noSpaceKeyRe is a value that was meant as a key: "image:nginx".
var noSpaceKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*:[^\s/]`)

// blockLine reads a line of a block scalar; in=false once it has ended.
// As in YAML, its first line sets the indentation of the others.
func (s *indentScan) blockLine(n, c int, body string) (in bool, f *indentFinding) {
	switch {
	case s.block < 0:
		return false, nil
	case body == "":
		return true, nil
	case c <= s.block:
		s.block = -1
		return false, nil
	case s.blockIndent == 0:
		s.blockIndent = c
	case s.blockIndent > 0 && c < s.blockIndent:
		return true, &indentFinding{line: n, col: c + 1, msg: fmt.Sprintf("this line is indented less than the first line of the text block of line %d; YAML nests by indentation: indent it by %s like that first line",
			s.lineOf(s.blockFrom), spaces(s.blockIndent))}
	}
	return true, nil
}

// place checks that a line at column c fits the open blocks, opening or
// closing blocks as it goes.
func (s *indentScan) place(n, c int, kind lineKind) *indentFinding {
	var closed []indentLevel // the blocks this line closes, deepest first
	for len(s.levels) > 0 && s.levels[len(s.levels)-1].col > c {
		closed = append(closed, s.levels[len(s.levels)-1])
		s.levels = s.levels[:len(s.levels)-1]
	}
	p := s.prev
	switch {
	case len(s.levels) == 0:
		s.open(n, c, kind)
	case p.opens && c > p.col:
		s.open(n, c, kind)
	case p.opens && !p.item && kind == kindItem && c == p.col:
		s.open(n, c, kind) // a list at the same indentation as its key
	default:
		top := &s.levels[len(s.levels)-1]
		if top.col < c {
			return s.between(n, c, kind, top, closed)
		}
		if f := s.sibling(n, c, kind, closed); f != nil {
			return f
		}
	}
	return nil
}

func (s *indentScan) open(n, c int, kind lineKind) {
	if kind == kindScalar {
		s.prev.opens = false // the value of the key above, on its own line
		s.ownValue, s.noSpace = n, ""
		return
	}
	s.levels = append(s.levels, indentLevel{col: c, seq: kind == kindItem, last: n})
}

// sibling checks a line at the column of the open block's entries.
func (s *indentScan) sibling(n, c int, kind lineKind, closed []indentLevel) *indentFinding {
	top := &s.levels[len(s.levels)-1]
	if top.seq && kind == kindKey && len(s.levels) > 1 && s.levels[len(s.levels)-2].col == c {
		// The end of a list written at its key's indentation.
		s.levels = s.levels[:len(s.levels)-1]
		top = &s.levels[len(s.levels)-1]
	}
	switch {
	case top.seq && kind != kindItem:
		what := "a key"
		if kind == kindScalar {
			what = "a line without \"- \""
		}
		hint := `start it with "- " for a new item`
		if len(closed) > 0 {
			inner := closed[len(closed)-1]
			hint = fmt.Sprintf("indent it by %s like line %d to go on with that item, or %s", spaces(inner.col), s.lineOf(inner.last), hint)
		}
		return &indentFinding{line: n, col: c + 1, msg: fmt.Sprintf("%s among the list items of line %d; YAML nests by indentation: %s", what, s.lineOf(top.last), hint)}
	case !top.seq && kind == kindItem:
		hint := "put the list under a key, indented more than the key"
		for _, l := range closed {
			if l.seq {
				hint = fmt.Sprintf("indent it by %s like the list item on line %d", spaces(l.col), s.lineOf(l.last))
				break
			}
		}
		return &indentFinding{line: n, col: c + 1, msg: fmt.Sprintf("a list item (\"- \") at the indentation of the key on line %d; YAML nests by indentation: %s", s.lineOf(top.last), hint)}
	case kind == kindScalar:
		return &indentFinding{line: n, col: c + 1, msg: fmt.Sprintf("this line has no \"key:\" but is indented like the key on line %d; YAML nests by indentation: indent it more to go on with the value above, or write key: value", s.lineOf(top.last))}
	}
	top.last = n
	return nil
}

// between reports a line indented past the open block's entries where no
// new block can start: the line above has a value already.
func (s *indentScan) between(n, c int, kind lineKind, top *indentLevel, closed []indentLevel) *indentFinding {
	if kind == kindScalar {
		return nil // the next line of a multi-line value
	}
	above := "key"
	if s.prev.item {
		above = "list item"
	}
	if c > s.prev.col && s.noSpace != "" && s.ownValue == s.prev.line+1 {
		k, v, _ := strings.Cut(s.noSpace, ":")
		return &indentFinding{line: n, col: c + 1, msg: fmt.Sprintf("this line is indented more than the key above it (line %d), which already has a value: line %d (%q) reads as its value, not as a key; YAML needs a space after the colon: %s: %s",
			s.lineOf(s.prev.line), s.lineOf(s.ownValue), s.noSpace, k, v)}
	}
	if c > s.prev.col {
		return &indentFinding{line: n, col: c + 1, msg: fmt.Sprintf("this line is indented more than the %s above it (line %d), which already has a value; YAML nests by indentation: indent it by %s like line %d",
			above, s.lineOf(s.prev.line), spaces(s.prev.col), s.lineOf(s.prev.line))}
	}
	// Either way out: on with the block just closed, or a new entry of the
	// enclosing one (unless that is the top level: rarely what was meant).
	var like []string
	if len(closed) > 0 {
		inner := closed[len(closed)-1]
		like = append(like, fmt.Sprintf("by %s like line %d", spaces(inner.col), s.lineOf(inner.last)))
	}
	if top.col > 0 || len(like) == 0 {
		like = append(like, fmt.Sprintf("by %s like line %d", spaces(top.col), s.lineOf(top.last)))
	}
	return &indentFinding{line: n, col: c + 1, msg: fmt.Sprintf("this line is indented less than the %s above it (line %d) but more than the one on line %d; YAML nests by indentation: indent it %s",
		above, s.lineOf(s.prev.line), s.lineOf(top.last), strings.Join(like, ", or "))}
}

func spaces(n int) string {
	if n == 1 {
		return "1 space"
	}
	return fmt.Sprintf("%d spaces", n)
}

// entry reads what a line (already placed) opens: the blocks of "- key:"
// and "- - x" on one line, and whether a block may follow it.
func (s *indentScan) entry(n, c int, body string) {
	for {
		kind, rest, restCol := classifyLine(body)
		switch kind {
		case kindItem:
			if opensBlock(rest) {
				s.prev = indentLine{line: n, col: c, opens: true, item: true}
				return
			}
			if k, _, _ := classifyLine(rest); k != kindScalar {
				s.levels = append(s.levels, indentLevel{col: c + restCol, seq: k == kindItem, last: n})
				body, c = rest, c+restCol
				continue
			}
			s.prev = indentLine{line: n, col: c, item: true}
			s.value(c, rest)
			return
		case kindKey:
			s.prev = indentLine{line: n, col: c, opens: opensBlock(rest)}
			s.value(c, rest)
			return
		default:
			s.value(c, body)
			return
		}
	}
}

// value notes a block scalar starting after a key at column c, and gives
// up on a flow collection or quoted string left open at the end of line.
func (s *indentScan) value(c int, v string) {
	v = stripProperties(stripComment(v))
	switch {
	case v == "":
	case v[0] == '|' || v[0] == '>':
		s.block, s.blockIndent, s.blockFrom = c, 0, s.prev.line
		if strings.ContainsAny(v[1:min(3, len(v))], "123456789") {
			s.blockIndent = -1
		}
	case v[0] == '"' || v[0] == '\'':
		if end := closingQuote(v); end < 0 {
			s.gaveUp = true
		}
	case v[0] == '[' || v[0] == '{':
		if strings.Count(v, "[")+strings.Count(v, "{") != strings.Count(v, "]")+strings.Count(v, "}") {
			s.gaveUp = true
		}
	}
}

// opensBlock tells whether a key's rest leaves its value to the next lines:
// nothing, or only an anchor or a tag.
func opensBlock(rest string) bool {
	for _, f := range strings.Fields(stripComment(rest)) {
		if f[0] != '&' && f[0] != '!' {
			return false
		}
	}
	return true
}

// classifyLine tells an item ("- x"), a key ("k: v") and anything else;
// rest is what follows "- " or "k:", at restCol from the line's start.
func classifyLine(body string) (kind lineKind, rest string, restCol int) {
	if body == "-" || strings.HasPrefix(body, "- ") {
		r := strings.TrimLeft(body[1:], " ")
		return kindItem, r, len(body) - len(r)
	}
	if end := keyEnd(body); end > 0 {
		r := strings.TrimLeft(body[end+1:], " ")
		return kindKey, r, len(body) - len(r)
	}
	return kindScalar, body, 0
}

// keyEnd is the index of the colon ending a plain or quoted key, or -1.
func keyEnd(body string) int {
	i := 0
	if body[0] == '"' || body[0] == '\'' {
		end := closingQuote(body)
		if end < 0 {
			return -1
		}
		i = end + 1
		for i < len(body) && body[i] == ' ' {
			i++
		}
		if i < len(body) && body[i] == ':' && (i+1 == len(body) || body[i+1] == ' ') {
			return i
		}
		return -1
	}
	if strings.ContainsRune("[{#|>%@`", rune(body[0])) {
		return -1 // flow collections, block scalars, reserved indicators
	}
	for ; i < len(body); i++ {
		switch {
		case body[i] == '#' && i > 0 && body[i-1] == ' ':
			return -1
		case body[i] == ':' && (i+1 == len(body) || body[i+1] == ' '):
			return i
		}
	}
	return -1
}

// closingQuote is the index of the quote closing the string s starts with.
func closingQuote(s string) int {
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch {
		case q == '"' && s[i] == '\\':
			i++
		case s[i] == q && q == '\'' && i+1 < len(s) && s[i+1] == '\'':
			i++ // '' is a quote inside single quotes
		case s[i] == q:
			return i
		}
	}
	return -1
}

// stripProperties drops the anchor and tag a value may start with.
func stripProperties(s string) string {
	for s != "" && (s[0] == '&' || s[0] == '!') {
		_, rest, _ := strings.Cut(s, " ")
		s = strings.TrimLeft(rest, " ")
	}
	return s
}

func stripComment(s string) string {
	if strings.HasPrefix(s, "#") {
		return ""
	}
	if i := strings.Index(s, " #"); i >= 0 && s[0] != '"' && s[0] != '\'' {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
