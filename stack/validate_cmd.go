package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// ValidateRequest is the input of `kontena stack validate`; the command
// only maps its flags onto it.
type ValidateRequest struct {
	File           string   // default kontena.yml
	Name           string   // -n
	Values         []string // -v key=value
	ValuesFrom     string   // --values-from
	ValuesTo       string   // --values-to
	Format         string   // yaml (default) or json
	DependencyTree bool     // --dependency-tree
	// Options carry the environment, filesystem, prompter, grid... File,
	// Name and Values above take precedence over the same fields here.
	Options Options
	// WriteFile writes --values-to; nil means os.WriteFile.
	WriteFile func(path string, data []byte) error
}

// Validate loads the stack like install would, with no grid needed, prints
// the warnings to stderr and the rendered stack (or its dependency tree) to
// stdout. The returned error lists every problem.
func Validate(ctx context.Context, req ValidateRequest, stdout, stderr io.Writer) error {
	if req.File == "" {
		req.File = "kontena.yml"
	}
	switch req.Format {
	case "", "yaml", "json":
	default:
		return fmt.Errorf("--format: expected yaml or json, found %q", req.Format)
	}
	opts := req.Options
	if req.Name != "" {
		opts.Name = req.Name
	}
	if opts.FS == nil {
		opts.FS = OSFS{}
	}
	values := map[string]any{}
	for k, v := range opts.Values {
		values[k] = v
	}
	if req.ValuesFrom != "" {
		b, err := opts.FS.ReadFile(req.ValuesFrom)
		if err != nil {
			return fmt.Errorf("--values-from: %w", err)
		}
		fromFile, err := ParseValuesFile(b)
		if err != nil {
			return fmt.Errorf("--values-from %s: %w", req.ValuesFrom, err)
		}
		for k, v := range fromFile {
			values[k] = v
		}
	}
	flags, err := ParseValueFlags(req.Values)
	if err != nil {
		return err
	}
	for k, v := range flags {
		values[k] = v
	}
	opts.Values = values

	res, err := Load(ctx, req.File, opts)
	if res != nil {
		for _, w := range res.Warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	}
	if err != nil {
		return err
	}
	if req.ValuesTo != "" {
		b, err := EncodeValues(res.AllValues())
		if err != nil {
			return err
		}
		write := req.WriteFile
		if write == nil {
			write = func(p string, d []byte) error { return os.WriteFile(p, d, 0o600) }
		}
		if err := write(req.ValuesTo, b); err != nil {
			return fmt.Errorf("--values-to: %w", err)
		}
	}
	var doc any = Document(res)
	if req.DependencyTree {
		doc = res.DependencyTree()
	}
	if req.Format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	enc := yaml.NewEncoder(stdout)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return enc.Close()
}

// ParseValueFlags reads -v key=value flags; "dep.key=value" is for the
// dependency dep.
func ParseValueFlags(flags []string) (map[string]any, error) {
	out := map[string]any{}
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-v %s: expected key=value", f)
		}
		out[k] = v
	}
	return out, nil
}

// ParseValuesFile reads a --values-from file: a YAML mapping of variable
// values; nested mappings are the values of dependencies (dep: {key: v}
// is the same as dep.key: v).
func ParseValuesFile(b []byte) (map[string]any, error) {
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	out := map[string]any{}
	var flatten func(prefix string, m map[string]any)
	flatten = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				flatten(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = v
		}
	}
	flatten("", m)
	return out, nil
}

// EncodeValues writes values for --values-to, sorted, in the form
// --values-from reads.
func EncodeValues(values map[string]any) ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var v yaml.Node
		if err := v.Encode(values[k]); err != nil {
			return nil, err
		}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &v)
	}
	return yaml.Marshal(root)
}

// StackDocument is what validate prints: the typed stack with its
// dependencies; values that go to or come from the vault are masked.
type StackDocument struct {
	Stack        `yaml:",inline"`
	Dependencies []*StackDocument `json:"dependencies,omitempty" yaml:"dependencies,omitempty"`
}

// Document builds the printable form of a result.
func Document(r *Result) *StackDocument {
	doc := &StackDocument{Stack: *r.Stack}
	doc.Variables = nil
	for _, v := range r.Stack.Variables {
		c := *v
		if c.Sensitive() && c.Value != nil {
			c.Value = "********"
		}
		doc.Variables = append(doc.Variables, &c)
	}
	for _, ch := range r.Children {
		doc.Dependencies = append(doc.Dependencies, Document(ch))
	}
	return doc
}
