package stack

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/osteele/liquid/filters"
	"github.com/osteele/liquid/parser"
	"github.com/osteele/liquid/render"
	"github.com/osteele/liquid/tags"
)

// hasLiquid is a cheap test to skip the template engine for plain files.
func hasLiquid(text []byte) bool {
	s := string(text)
	return strings.Contains(s, "{{") || strings.Contains(s, "{%")
}

// liquidRenderer renders one stack file. It is built per load: its tags and
// filters close over the load's limits and counters.
type liquidRenderer struct {
	lim     Limits
	cfg     render.Config
	filters map[string]bool
	steps   int
	out     *limitedBuffer
}

// Reasons to stop, reported with the line where rendering stopped.
var (
	errTooManySteps = errors.New("the template runs too long (loops are limited)")
	errTooLarge     = errors.New("the rendered file is too large")
)

func newLiquidRenderer(lim Limits) *liquidRenderer {
	r := &liquidRenderer{lim: lim, cfg: render.NewConfig(), filters: map[string]bool{}}
	filters.AddStandardFilters(guardedFilters{r})
	tags.AddStandardTags(r.cfg)
	r.cfg.AddTag("include", func(string) (func(io.Writer, render.Context) error, error) {
		return nil, errors.New("include is not supported in stack files")
	})
	// __t counts rendered nodes and writes nothing (so it cannot disturb
	// whitespace trimming); __l writes a line marker for the line map.
	r.cfg.AddTag("__t", func(string) (func(io.Writer, render.Context) error, error) {
		return func(io.Writer, render.Context) error {
			r.steps++
			if r.steps > r.lim.MaxLiquidSteps {
				return errTooManySteps
			}
			if r.out != nil && r.out.overflow {
				return errTooLarge
			}
			return nil
		}, nil
	})
	r.cfg.AddTag("__l", func(string) (func(io.Writer, render.Context) error, error) {
		return func(w io.Writer, ctx render.Context) error {
			n, _ := strconv.Atoi(ctx.TagArgs())
			_, err := w.Write(appendMarker(nil, n))
			return err
		}, nil
	})
	// capture is renamed to __capture before parsing so that this version,
	// which bounds the captured text, is the one that runs.
	r.cfg.AddBlock("__capture").Compiler(func(node render.BlockNode) (func(io.Writer, render.Context) error, error) {
		name := strings.TrimSpace(node.Args)
		if !liquidIdentRe.MatchString(name) {
			return nil, fmt.Errorf("capture: expected a variable name, found %q", name)
		}
		return func(_ io.Writer, ctx render.Context) error {
			buf := &limitedBuffer{max: r.lim.MaxValueSize}
			if err := ctx.RenderChildren(buf); err != nil {
				return err
			}
			if buf.overflow {
				return fmt.Errorf("capture %s: the captured text is larger than %d bytes", name, r.lim.MaxValueSize)
			}
			ctx.Set(name, stripMarkerText(string(buf.b)))
			return nil
		}, nil
	})
	return r
}

var liquidIdentRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*\??$`)

// guardedFilters registers the standard filters wrapped so that no filter
// result may exceed MaxValueSize: append, concat, replace and friends can
// otherwise double a value per use and exhaust memory in a few lines.
type guardedFilters struct{ r *liquidRenderer }

var errorType = reflect.TypeOf((*error)(nil)).Elem()

func (g guardedFilters) AddFilter(name string, fn any) {
	g.r.filters[name] = true
	g.r.cfg.AddFilter(name, guardFilter(fn, g.r.lim.MaxValueSize))
}

func guardFilter(fn any, max int) any {
	fv := reflect.ValueOf(fn)
	ft := fv.Type()
	in := make([]reflect.Type, ft.NumIn())
	for i := range in {
		in[i] = ft.In(i)
	}
	if ft.NumOut() == 2 && ft.Out(1) != errorType {
		return fn
	}
	outs := []reflect.Type{ft.Out(0), errorType}
	wrapped := reflect.MakeFunc(reflect.FuncOf(in, outs, ft.IsVariadic()), func(args []reflect.Value) []reflect.Value {
		var res []reflect.Value
		if ft.IsVariadic() {
			res = fv.CallSlice(args)
		} else {
			res = fv.Call(args)
		}
		errV := reflect.Zero(errorType)
		if len(res) == 2 && !res[1].IsNil() {
			errV = res[1]
		} else if valueSize(res[0], max) > max {
			err := fmt.Errorf("the result is larger than %d bytes", max)
			errV = reflect.ValueOf(&err).Elem()
		}
		return []reflect.Value{res[0], errV}
	})
	return wrapped.Interface()
}

// valueSize estimates the memory of a filter result, stopping once it is
// over budget.
func valueSize(v reflect.Value, budget int) int {
	if !v.IsValid() {
		return 0
	}
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return 0
		}
		return valueSize(v.Elem(), budget)
	case reflect.String:
		return v.Len()
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Len()
		}
		total := 0
		for i := 0; i < v.Len() && total <= budget; i++ {
			total += 8 + valueSize(v.Index(i), budget-total)
		}
		return total
	case reflect.Map:
		total := 0
		it := v.MapRange()
		for it.Next() && total <= budget {
			total += 16 + valueSize(it.Key(), budget-total) + valueSize(it.Value(), budget-total)
		}
		return total
	}
	return 8
}

// limitedBuffer collects output up to max bytes. It never returns an error
// (osteele/liquid panics on writer errors at flush); the renderer's step tag
// notices the overflow and stops the template instead.
type limitedBuffer struct {
	b        []byte
	max      int
	overflow bool
}

func (w *limitedBuffer) Write(p []byte) (int, error) {
	if w.overflow {
		return len(p), nil
	}
	if len(w.b)+len(p) > w.max {
		w.overflow = true
		return len(p), nil
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

var (
	captureTagRe = regexp.MustCompile(`(\{%-?\s*)(end)?capture\b`)
	verbatimRe   = regexp.MustCompile(`(?s)\{%-?\s*(raw|comment)\s*-?%\}.*?\{%-?\s*end(raw|comment)\s*-?%\}`)
	tagNameRe    = regexp.MustCompile(`\{%-?\s*([A-Za-z_][A-Za-z0-9_]*)?`)
)

var liquidBlockTags = map[string]bool{"if": true, "unless": true, "for": true, "case": true, "capture": true,
	"tablerow": true, "comment": true, "raw": true}

var liquidSimpleTags = map[string]bool{"else": true, "elsif": true, "when": true, "assign": true, "cycle": true,
	"break": true, "continue": true, "include": true}

// preprocessLiquid checks tag names (osteele/liquid reports an unknown block
// tag only as a stray end tag) and the nesting depth (its parser recurses),
// then renames capture so that the bounded version is used. Text inside raw
// and comment blocks is left alone.
func preprocessLiquid(text string, maxNesting int) (string, int, int, error) {
	verbatim := verbatimRe.FindAllStringIndex(text, -1)
	// Tags come in position order, so one cursor walks the verbatim regions.
	cursor := 0
	inVerbatim := func(pos int) bool {
		for cursor < len(verbatim) && verbatim[cursor][1] <= pos {
			cursor++
		}
		return cursor < len(verbatim) && pos > verbatim[cursor][0]
	}
	depth, line, last, lineStart := 0, 1, 0, 0
	for _, m := range tagNameRe.FindAllStringSubmatchIndex(text, -1) {
		if nl := strings.LastIndexByte(text[last:m[0]], '\n'); nl >= 0 {
			line += strings.Count(text[last:m[0]], "\n")
			lineStart = last + nl + 1
		}
		last = m[0]
		col := m[0] - lineStart + 1
		if inVerbatim(m[0]) {
			continue
		}
		if m[2] < 0 {
			return "", line, col, errors.New("expected a tag name after {%")
		}
		name := text[m[2]:m[3]]
		switch {
		case liquidBlockTags[name]:
			depth++
			if depth > maxNesting {
				return "", line, col, fmt.Errorf("blocks are nested more than %d deep", maxNesting)
			}
		case strings.HasPrefix(name, "end") && liquidBlockTags[name[3:]]:
			depth--
		case liquidSimpleTags[name]:
		default:
			msg := fmt.Sprintf("unknown tag %q", name)
			var known []string
			for k := range liquidBlockTags {
				known = append(known, k)
			}
			for k := range liquidSimpleTags {
				known = append(known, k)
			}
			if s := closest(name, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return "", line, col, errors.New(msg)
		}
	}
	var b strings.Builder
	pos := 0
	cursor = 0
	for _, m := range captureTagRe.FindAllStringSubmatchIndex(text, -1) {
		if inVerbatim(m[0]) {
			continue
		}
		at := m[1] - len("capture")
		b.WriteString(text[pos:at])
		b.WriteString("__")
		pos = at
	}
	b.WriteString(text[pos:])
	return b.String(), 0, 0, nil
}

// render runs the template. It returns the output with the line map, or
// the problems found (syntax, undefined names, limits).
func (r *liquidRenderer) render(src *source, text string, bindings map[string]any) ([]byte, *lineMap, Errors) {
	failAt := func(line, col int, format string, args ...any) ([]byte, *lineMap, Errors) {
		msg := fmt.Sprintf(format, args...)
		msg = strings.ReplaceAll(msg, "__capture", "capture")
		msg = strings.TrimSuffix(msg, " in "+src.name) // the position says where
		if line <= 0 {
			col = 0
		}
		return nil, nil, Errors{{File: src.name, Line: line, Col: col, Msg: "Liquid: " + msg}}
	}
	fail := func(line int, format string, args ...any) ([]byte, *lineMap, Errors) {
		return failAt(line, 0, format, args...)
	}
	pre, line, col, err := preprocessLiquid(text, r.lim.MaxLiquidNesting)
	if err != nil {
		return failAt(line, col, "%v", err)
	}
	root, perr := r.compile(src, pre)
	if perr != nil {
		return fail(perr.LineNumber(), "%s", causeText(perr))
	}
	if problems := r.check(src, text, root, bindings); len(problems) > 0 {
		return nil, nil, problems
	}
	proto, err := r.prototypes(src)
	if err != nil {
		return fail(0, "internal error: %v", err)
	}
	instrument(root, proto)
	r.out = &limitedBuffer{max: r.lim.MaxRenderedSize}
	if rerr := r.run(root, bindings); rerr != nil {
		var se interface{ LineNumber() int }
		line := 0
		if errors.As(rerr, &se) {
			line = se.LineNumber()
		}
		return fail(line, "%s", causeText(rerr))
	}
	if r.out.overflow {
		return fail(0, "%v (limit %d bytes)", errTooLarge, r.lim.MaxRenderedSize)
	}
	out, lm := stripMarkers(r.out.b)
	return out, lm, nil
}

func (r *liquidRenderer) compile(src *source, text string) (root render.Node, perr parser.Error) {
	defer func() {
		if p := recover(); p != nil {
			root, perr = nil, parser.Errorf(invalidLoc{}, "cannot parse the template: %v", p)
		}
	}()
	return r.cfg.Compile(text, parser.SourceLoc{Pathname: src.name, LineNo: 1})
}

func (r *liquidRenderer) run(root render.Node, bindings map[string]any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cannot render the template: %v", p)
		}
	}()
	if rerr := render.Render(root, r.out, bindings, r.cfg); rerr != nil {
		return rerr
	}
	return nil
}

type invalidLoc struct{}

func (invalidLoc) SourceLocation() parser.SourceLoc { return parser.SourceLoc{} }
func (invalidLoc) SourceText() string               { return "" }

// causeText is the message of a Liquid error without its "Liquid error
// (line N):" prefix, which our own position replaces.
func causeText(err error) string {
	var c interface{ Cause() error }
	for errors.As(err, &c) && c.Cause() != nil {
		next := c.Cause()
		if next == err {
			break
		}
		err = next
		c = nil
	}
	msg := err.Error()
	if i := strings.Index(msg, "): "); strings.HasPrefix(msg, "Liquid error") && i > 0 {
		msg = msg[i+3:]
	}
	return msg
}

type protoNodes struct {
	tick *render.TagNode
	line *render.TagNode
}

func (r *liquidRenderer) prototypes(src *source) (protoNodes, error) {
	var p protoNodes
	root, err := r.cfg.Compile("{% __t %}{% __l 0 %}", parser.SourceLoc{Pathname: src.name, LineNo: 1})
	if err != nil {
		return p, err
	}
	var found []*render.TagNode
	var walk func(render.Node)
	walk = func(n render.Node) {
		switch n := n.(type) {
		case *render.SeqNode:
			for _, c := range n.Children {
				walk(c)
			}
		case *render.TagNode:
			found = append(found, n)
		}
	}
	walk(root)
	if len(found) != 2 {
		return p, errors.New("unexpected template structure")
	}
	return protoNodes{tick: found[0], line: found[1]}, nil
}

// instrument inserts a step counter before every node and a line marker
// before every text chunk that is not subject to a preceding whitespace trim.
func instrument(n render.Node, p protoNodes) {
	switch n := n.(type) {
	case *render.SeqNode:
		n.Children = instrumentList(n.Children, p)
	case *render.BlockNode:
		if n.Name == "raw" || n.Name == "comment" {
			return
		}
		n.Body = instrumentList(n.Body, p)
		for _, c := range n.Clauses {
			instrument(c, p)
		}
	}
}

func instrumentList(list []render.Node, p protoNodes) []render.Node {
	// A tick also leads an empty list, so an empty loop body still counts.
	out := make([]render.Node, 0, 3*len(list)+1)
	out = append(out, p.tick)
	for i, c := range list {
		if i > 0 {
			out = append(out, p.tick)
		}
		if t, ok := c.(*render.TextNode); ok {
			trimmed := false
			if i > 0 {
				if tr, ok := list[i-1].(*render.TrimNode); ok && tr.TrimDirection == parser.Right {
					trimmed = true
				}
			}
			if !trimmed {
				ln := *p.line
				ln.Token.Args = strconv.Itoa(t.SourceLoc.LineNo)
				out = append(out, &ln)
			}
		}
		instrument(c, p)
		out = append(out, c)
	}
	return out
}
