package stack

import (
	"bytes"
	"regexp"

	"gopkg.in/yaml.v3"
)

// Kontena's `stack validate` ran offline unless --online was given, and
// then set GRID to "validate" and PLATFORM to "validate-platform", so that
// files using them (image: registry.${GRID}.kontena.local/app, only_if on
// the grid's name) still rendered. Files and CI scripts rely on that.
const (
	offlineGrid     = "validate"
	offlinePlatform = "validate-platform"
)

// gridBuiltins are the GRID and PLATFORM built-ins of a load. Options.Grid
// is empty exactly when no grid was named: `stack validate` fills it from
// --grid only, and every command that talks to a grid names its grid. So
// no other option is needed to tell an offline validate; offline is true
// when the stand-in names are used.
func gridBuiltins(opts Options) (grid, platform string, offline bool) {
	grid, platform = opts.Grid, opts.Platform
	if grid == "" {
		grid, offline = offlineGrid, true
		if platform == "" {
			platform = offlinePlatform
		}
	}
	if platform == "" {
		platform = grid
	}
	return grid, platform, offline
}

// gridRefRe finds a use of GRID or PLATFORM: ${GRID}, $GRID, or a name in
// a Liquid tag or output ({% if GRID == "prod" %}, {{ GRID }}).
var gridRefRe = regexp.MustCompile(`\$\{?(GRID|PLATFORM)\b|\{[{%][^}]*\b(GRID|PLATFORM)\b`)

// warnOfflineGrid tells, at the first use of GRID or PLATFORM in the file,
// that it got the stand-in name, and how to render for a real grid.
func (ly *layer) warnOfflineGrid(d *decoder, grid, platform string) {
	m := gridRefRe.FindSubmatchIndex(ly.text)
	if m == nil {
		return
	}
	g := 2 // the group that matched: ${NAME} or Liquid
	if m[g] < 0 {
		g = 4
	}
	name, value := string(ly.text[m[g]:m[g+1]]), grid
	if name == "PLATFORM" {
		value = platform
	}
	start := m[g]
	line := 1 + bytes.Count(ly.text[:start], []byte("\n"))
	col := 1 + start - (bytes.LastIndexByte(ly.text[:start], '\n') + 1)
	d.warnf(&yaml.Node{Line: line, Column: col}, name, "no grid was given, so %s is %q (as in Kontena's offline stack validate); give --grid NAME to render the stack for that grid",
		name, value)
}
