// Package stack loads Kontena v3 stack files (kontena.yml): it resolves
// their variables, renders their Liquid templates and ${VAR} references,
// follows depends and extends, and validates every key into a typed Stack.
//
// The rendering order is Kontena's:
//
//  1. the variables section is read with only GRID, STACK, PLATFORM and
//     PARENT_STACK substituted, and the variables are resolved (forced
//     values from -v, the file's value:, the resolvers in from:, default:);
//  2. the whole file is rendered with Liquid, strictly: undefined variables
//     and filters are errors, found before rendering in every branch;
//  3. the YAML is parsed, services and volumes excluded by only_if/skip_if
//     are dropped, and ${VAR}/$VAR are substituted inside the parsed
//     scalars (so a value can never break the YAML around it);
//  4. every key is validated into typed values, extends are merged, and
//     the dependencies are loaded as child stacks <name>-<dep>.
//
// Load (or LoadBytes) returns a Result: the Stack, the source text and the
// variable values to store for upgrade --reuse-values, or an Errors list
// with every problem as file:line:col: key.path: expected ..., found ....
//
// Nothing here needs a grid: the grid-backed resolvers go through the
// GridResolver interface, prompts through Prompter, files through FS and
// registry stacks through Registry, all given in Options. Work is bounded
// (Limits) so that hostile files fail fast instead of exhausting memory.
package stack
