package stack

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// readRaw parses the file as written. A file with Liquid outside comments may
// not be YAML yet; then the variables and depends blocks are read on their
// own, which is all that is needed before rendering.
// It returns the expanded sections and the whole parsed (unexpanded) file.
func (ly *layer) readRaw(d *decoder, liquid bool) (*yaml.Node, *yaml.Node) {
	if liquid {
		// The file is parsed again after rendering; reading just the three
		// sections needed now halves the parsing of a templated file.
		if n := ly.rawSections(d); n != nil && mapGet(n, "stack") != nil {
			return n, nil
		}
	}
	n, perr := parseYAML(ly.src, ly.text)
	if perr != nil {
		if liquid {
			// Not YAML before rendering: the sections alone may still be.
			if n := ly.rawSections(d); n != nil {
				return n, nil
			}
		}
		*d.errs = append(*d.errs, perr)
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		if liquid {
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, n
		}
		d.expected(n, "", "a mapping of stack keys (stack:, services:, ...)")
		return nil, nil
	}
	return ly.expandSections(d, n), n
}

// expandSections expands only what is read before rendering. The rest of
// the file as written may repeat keys inside {% if %}/{% else %} comments.
func (ly *layer) expandSections(d *decoder, n *yaml.Node) *yaml.Node {
	part := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	for _, key := range []string{"stack", "variables", "depends"} {
		if k := mapKeyNode(n, key); k != nil {
			part.Content = append(part.Content, k, mapGet(n, key))
		}
	}
	x := &expander{d: d, budget: ly.l.lim.MaxNodes, active: map[*yaml.Node]bool{}}
	return x.expand(part, "")
}

var topKeyLineRe = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*):`)

// rawSections extracts the stack, variables and depends blocks textually,
// padded with empty lines so positions stay those of the file.
func (ly *layer) rawSections(d *decoder) *yaml.Node {
	lines := strings.Split(string(ly.text), "\n")
	var b strings.Builder
	keep := false
	for _, line := range lines {
		if strings.HasPrefix(line, "{%") || strings.HasPrefix(line, "{{") {
			b.WriteByte('\n') // a tag line neither ends nor belongs to a section
			continue
		}
		if m := topKeyLineRe.FindStringSubmatch(line); m != nil {
			keep = m[1] == "variables" || m[1] == "depends" || m[1] == "stack"
		} else if line != "" && line[0] != ' ' && line[0] != '\t' && line[0] != '#' {
			keep = false
		}
		if keep {
			b.WriteString(line)
		}
		b.WriteByte('\n')
	}
	n, perr := parseYAML(ly.src, []byte(b.String()))
	if perr != nil || n.Kind != yaml.MappingNode {
		return nil
	}
	return ly.expandSections(d, n)
}

func (ly *layer) parseExpand(d *decoder, text []byte) *yaml.Node {
	n, perr := parseYAML(d.src, text)
	if perr != nil {
		*d.errs = append(*d.errs, perr)
		return nil
	}
	return ly.expandAll(d, n)
}

func (ly *layer) expandAll(d *decoder, n *yaml.Node) *yaml.Node {
	x := &expander{d: d, budget: ly.l.lim.MaxNodes, active: map[*yaml.Node]bool{}}
	return x.expand(n, "")
}
