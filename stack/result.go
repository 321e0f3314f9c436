package stack

import (
	"context"
	"fmt"
	"sort"

	"gopkg.in/yaml.v3"
)

// Result is a loaded stack: everything install/upgrade need and what they
// store so that a later `upgrade --reuse-values` can start from it.
type Result struct {
	File       string `json:"file"` // path, registry ref or URL it was read from
	Name       string `json:"name"` // installed name
	ParentName string `json:"parent_name,omitempty"`
	// Stack is the validated definition.
	Stack *Stack `json:"stack"`
	// Source is the file as written (Rendered gives the text after Liquid
	// and ${} substitution, which Stack was decoded from).
	Source string `json:"source"`
	// Variables are the resolved values to store: built-ins, skipped and
	// vault-backed variables are left out.
	Variables map[string]any `json:"variables"`
	// VaultWrites are the `to: vault` setters; install applies them with
	// WriteVault, validate never does.
	VaultWrites []VaultWrite `json:"-"`
	// Children are the dependencies (depends), installed as <name>-<dep>.
	Children []*Result `json:"children,omitempty"`
	// Warnings of this load (on the top-level result only: children's
	// warnings are included there).
	Warnings Errors `json:"warnings,omitempty"`

	rendered *yaml.Node
}

// Rendered is the stack file after Liquid and ${} substitution, with
// anchors expanded and skipped services removed. It is built on demand:
// encoding is a third of the cost of a load.
func (r *Result) Rendered() string {
	if r.rendered == nil {
		return ""
	}
	b, err := yaml.Marshal(r.rendered)
	if err != nil {
		return ""
	}
	return string(b)
}

// Walk calls fn for r and its descendants, parents before children.
func (r *Result) Walk(fn func(*Result)) {
	fn(r)
	for _, c := range r.Children {
		c.Walk(fn)
	}
}

// AllValues are the stored variable values of r and its children, children
// under "dep.var" keys: the same form -v and --values-from take.
func (r *Result) AllValues() map[string]any {
	out := map[string]any{}
	for k, v := range r.Variables {
		out[k] = v
	}
	deps := map[string]*Dependency{}
	if r.Stack != nil {
		for _, d := range r.Stack.Depends {
			deps[d.InstalledName] = d
		}
	}
	for _, c := range r.Children {
		prefix := c.Name
		if d := deps[c.Name]; d != nil {
			prefix = d.Name
		}
		for k, v := range c.AllValues() {
			out[prefix+"."+k] = v
		}
	}
	return out
}

// WriteVault applies the `to: vault` setters of r and its children.
func (r *Result) WriteVault(ctx context.Context, g GridResolver) error {
	var err error
	r.Walk(func(x *Result) {
		for _, w := range x.VaultWrites {
			if err != nil {
				return
			}
			if g == nil {
				err = fmt.Errorf("variable %s: writing secret %s to the vault: %w", w.Variable, w.Secret, ErrNeedsGrid)
				return
			}
			if e := g.VaultWrite(ctx, w.Secret, w.Value); e != nil {
				err = fmt.Errorf("variable %s: writing secret %s to the vault: %w", w.Variable, w.Secret, e)
			}
		}
	})
	return err
}

// DependencyNode is one stack of the dependency tree.
type DependencyNode struct {
	Name      string            `json:"name" yaml:"name"`
	Stack     string            `json:"stack" yaml:"stack"`
	File      string            `json:"file" yaml:"file"`
	Variables map[string]any    `json:"variables,omitempty" yaml:"variables,omitempty"`
	Depends   []*DependencyNode `json:"depends,omitempty" yaml:"depends,omitempty"`
}

// DependencyTree describes r and its children for --dependency-tree.
func (r *Result) DependencyTree() *DependencyNode {
	n := &DependencyNode{Name: r.Name, File: r.File, Variables: r.Variables}
	if r.Stack != nil {
		n.Stack = r.Stack.Stack
	}
	for _, c := range r.Children {
		n.Depends = append(n.Depends, c.DependencyTree())
	}
	return n
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
