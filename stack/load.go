package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the stack file at path (or, if no such file exists, fetches a
// registry reference like user/name:1.0.0), renders and validates it and its
// dependencies. On error the returned Result carries only the warnings, and
// the error is an Errors listing every problem found.
func Load(ctx context.Context, path string, opts Options) (*Result, error) {
	l := newLoader(ctx, opts)
	src, text, err := l.open(path, "", true)
	if err != nil {
		l.errs = append(l.errs, &Error{File: path, Msg: err.Error()})
		return l.finish(nil)
	}
	return l.finish(l.root(src, text))
}

// LoadBytes is Load for content already read; name is used in messages and
// relative paths in the file are relative to its directory.
func LoadBytes(ctx context.Context, name string, content []byte, opts Options) (*Result, error) {
	l := newLoader(ctx, opts)
	src := &source{name: name, path: name, dir: filepath.Dir(name)}
	return l.finish(l.root(src, content))
}

// loader holds what one Load shares across files.
type loader struct {
	ctx   context.Context
	opts  Options
	lim   Limits
	fs    FS
	errs  Errors
	warns Errors
}

func newLoader(ctx context.Context, opts Options) *loader {
	if ctx == nil {
		ctx = context.Background()
	}
	l := &loader{ctx: ctx, opts: opts, lim: opts.Limits.withDefaults(), fs: opts.FS}
	if l.fs == nil {
		l.fs = OSFS{}
	}
	return l
}

func (l *loader) env(name string) (string, bool) {
	if l.opts.LookupEnv != nil {
		return l.opts.LookupEnv(name)
	}
	return os.LookupEnv(name)
}

func (l *loader) readFile(path string) ([]byte, error) {
	b, err := l.fs.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > l.lim.MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, l.lim.MaxFileSize)
	}
	return b, nil
}

var registryRefRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_-]*(:[0-9A-Za-z.+-]+)?$`)

// open reads a stack or compose file: a path (relative to dir), else a
// registry reference or URL through the Registry. Without local, only the
// latter: a stack from a registry must not read the user's files.
func (l *loader) open(ref, dir string, local bool) (*source, []byte, error) {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		return l.fetch(ref)
	}
	if !local {
		if registryRefRe.MatchString(ref) {
			return l.fetch(ref)
		}
		return nil, nil, fmt.Errorf("a stack from a registry can only refer to registry stacks (user/name:version), not to the local file %s", ref)
	}
	p := ref
	if !filepath.IsAbs(p) && dir != "" {
		p = filepath.Join(dir, p)
	}
	b, err := l.readFile(p)
	if err == nil {
		return &source{name: p, path: p, dir: filepath.Dir(p)}, b, nil
	}
	if errors.Is(err, fs.ErrNotExist) && registryRefRe.MatchString(ref) {
		return l.fetch(ref)
	}
	return nil, nil, err
}

func (l *loader) fetch(ref string) (*source, []byte, error) {
	if l.opts.Registry == nil {
		return nil, nil, fmt.Errorf("%s is not a local file and fetching it needs a stack registry (none is configured)", ref)
	}
	b, err := l.opts.Registry.Fetch(l.ctx, ref)
	if err != nil {
		return nil, nil, fmt.Errorf("fetching %s: %w", ref, err)
	}
	if len(b) > l.lim.MaxFileSize {
		return nil, nil, fmt.Errorf("%s is larger than %d bytes", ref, l.lim.MaxFileSize)
	}
	return &source{name: ref}, b, nil
}

var installNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

func (l *loader) root(src *source, text []byte) *Result {
	if n := l.opts.Name; n != "" && (!installNameRe.MatchString(n) || len(n) > 63) {
		l.errs = append(l.errs, &Error{Path: "-n", Expected: "a stack name of lowercase letters, digits and - (at most 63)", Found: describeScalar(n)})
		return nil
	}
	ly := &layer{l: l, src: src, text: text, name: l.opts.Name, values: l.opts.Values, defaults: l.opts.Defaults,
		prompter: l.opts.Prompter, chain: []string{identity(src)}}
	res, _ := ly.run()
	if res != nil && len(l.errs) == 0 {
		l.checkUnusedValues(res)
	}
	return res
}

func (l *loader) finish(res *Result) (*Result, error) {
	warns := l.warns.sorted()
	errs := l.errs.sorted()
	if len(errs) > 0 {
		return &Result{Warnings: warns}, errs
	}
	res.Warnings = warns
	return res, nil
}

func identity(src *source) string {
	if src.path != "" {
		return filepath.Clean(src.path)
	}
	return src.name
}

// layer is one stack file being loaded: the top-level file, a dependency, or
// a stack file that a service extends.
type layer struct {
	l           *loader
	src         *source
	text        []byte
	name        string // installed name
	parent      string
	valuePrefix string // "dep." for messages about -v
	values      map[string]any
	defaults    map[string]any
	prompter    Prompter
	depth       int
	chain       []string // files on the path here, for cycle errors
	eng         *varEngine
	onlyService bool // loaded for extends: no dependencies, no stack-wide checks
}

func (ly *layer) decoder(src *source) *decoder {
	return &decoder{src: src, errs: &ly.l.errs, warns: &ly.l.warns}
}

// run executes the rendering order: variables, Liquid, ${}, YAML, validation.
func (ly *layer) run() (*Result, *stackDraft) {
	l := ly.l
	d := ly.decoder(ly.src)
	res := &Result{File: ly.src.name, Source: string(ly.text)}
	if len(ly.text) > l.lim.MaxFileSize {
		d.errorf(nil, "", "the file is larger than %d bytes", l.lim.MaxFileSize)
		return res, nil
	}
	if bytes.IndexByte(ly.text, 0) >= 0 {
		d.errorf(nil, "", "the file contains NUL bytes; is it a text file?")
		return res, nil
	}
	liquid := hasLiquid(ly.text)
	raw, parsed := ly.readRaw(d, liquid)
	if raw == nil {
		return res, nil
	}

	// 1. Variables, with only the built-ins substituted.
	key, _ := parseStackKey(mapGet(raw, "stack"))
	if ly.name == "" {
		ly.name = key.name
	}
	res.Name, res.ParentName = ly.name, ly.parent
	grid, platform, offline := gridBuiltins(l.opts)
	if offline {
		ly.warnOfflineGrid(d, grid, platform)
	}
	builtins := map[string]string{"GRID": grid, "STACK": ly.name, "PLATFORM": platform, "PARENT_STACK": ly.parent}
	deps := map[string]string{}
	ly.addDepNames(raw, deps)
	var defs []*Variable
	if vn := mapGet(raw, "variables"); vn != nil {
		d.substituteTree(vn, "variables", builtinScope(builtins))
		defs = d.decodeVariables(vn)
	}
	for _, v := range defs {
		v.keepSecretInVault(ly.name)
	}
	eng := newVarEngine(ly, d, defs, builtins, deps)
	ly.eng = eng
	eng.resolveAll()

	// 2. Liquid over the whole file. With a variable in error, a template
	// would only produce confusing follow-up errors: stop at the variables.
	text, rsrc := ly.text, ly.src
	if liquid && eng.anyFailed() {
		return res, nil
	}
	if liquid {
		out, lm, errs := newLiquidRenderer(l.lim).render(ly.src, string(ly.text), eng.liquidBindings())
		if len(errs) > 0 {
			l.errs = append(l.errs, errs...)
			return res, nil
		}
		text = out
		rsrc = &source{name: ly.src.name, path: ly.src.path, dir: ly.src.dir, lines: lm}
	}

	// 3 and 4. Parse, drop what only_if/skip_if exclude, substitute ${}.
	rd := ly.decoder(rsrc)
	var root *yaml.Node
	if liquid {
		root = ly.parseExpand(rd, text)
	} else {
		// Nothing was rendered: the tree read for the variables is the file.
		root = ly.expandAll(rd, parsed)
	}
	if root == nil {
		return res, nil
	}
	if root.Kind != yaml.MappingNode {
		rd.expected(root, "", "a mapping of stack keys (stack:, services:, ...)")
		return res, nil
	}
	ly.addDepNames(root, eng.deps)
	sc := eng.substScope()
	ly.applyConditions(rd, root, "services", eng, sc)
	ly.applyConditions(rd, root, "volumes", eng, sc)
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch k := root.Content[i].Value; k {
		case "variables", "data":
		default:
			rd.substituteTree(root.Content[i+1], k, sc)
		}
	}
	res.rendered = root

	// Validate and build the typed stack.
	sd := rd.decodeTop(root, rsrc.dir)
	st := sd.st
	st.Name, st.ParentName, st.Variables = ly.name, ly.parent, defs
	for _, dep := range st.Depends {
		dep.InstalledName = ly.name + "-" + dep.Name
		if _, clash := sd.byName[dep.Name]; clash {
			sd.depRefs[dep.Name].errorf("depends."+dep.Name, "%q is both a service and a dependency", dep.Name)
		}
	}
	for _, dr := range sd.services {
		ly.applyEnvFiles(dr)
	}
	for _, dr := range sd.services {
		ly.resolveExtends(sd, dr, sc)
	}
	res.Variables = eng.storedValues()
	res.VaultWrites = eng.writes
	if ly.onlyService {
		return res, sd
	}
	for _, dr := range sd.services {
		st.Services = append(st.Services, dr.finalize())
	}
	validateStack(sd)
	if len(l.errs) == 0 {
		ly.validateSpec(rd, root, sd)
	}
	res.Stack = st
	for _, dep := range st.Depends {
		if child := ly.loadDependency(dep, sd.depRefs[dep.Name], sd.depStack[dep.Name]); child != nil {
			res.Children = append(res.Children, child)
		}
	}
	return res, sd
}

// builtinScope substitutes only the built-ins and leaves every other ${}
// for the interpolate/evaluate resolvers.
func builtinScope(builtins map[string]string) *scope {
	return &scope{values: builtins, unset: map[string]bool{}, keepUnknown: true}
}

// applyConditions removes the services (or volumes) whose only_if/skip_if
// exclude them, before substitution, so their ${} cannot fail the file.
func (ly *layer) applyConditions(d *decoder, root *yaml.Node, section string, eng *varEngine, sc *scope) {
	n := mapGet(root, section)
	if n == nil || n.Kind != yaml.MappingNode {
		return
	}
	kept := n.Content[:0:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind == yaml.MappingNode {
			path := section + "." + k.Value
			oi, si := mapGet(v, "only_if"), mapGet(v, "skip_if")
			if oi != nil || si != nil {
				d.substituteTree(oi, path+".only_if", sc)
				d.substituteTree(si, path+".skip_if", sc)
				if include, _ := d.included(oi, si, path, eng.lookup); !include {
					continue
				}
			}
		}
		kept = append(kept, k, v)
	}
	n.Content = kept
}

// validateSpec runs ValidateSpec, the check the grid runs on every stack it
// is sent, on the stack just built (once the file has no other error, so
// nothing is reported twice), placing each problem at its service's key.
// The installed name is left out: -n is checked on its own, and a
// dependency's name (<parent>-<dep>) is checked by the grid at install.
func (ly *layer) validateSpec(d *decoder, root *yaml.Node, sd *stackDraft) {
	st := *sd.st
	st.Name, st.ParentName = "", ""
	errs, _ := ValidateSpec(&st).(Errors)
	for _, e := range errs {
		at := posRef{d, root}
		if rest, ok := strings.CutPrefix(e.Path, "services."); ok {
			name, _, _ := strings.Cut(rest, ".")
			if dr := sd.byName[name]; dr != nil {
				at = dr.at
			}
		}
		at.d.add(at.d.errs, at.n, e.Path, *e)
	}
}
