package stack

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// IsTerminal reports whether f is a character device (an interactive
// terminal), the condition for prompting.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// TerminalPrompter asks on a line-based terminal: questions go to Out,
// answers are read a line at a time from In.
type TerminalPrompter struct {
	In  io.Reader
	Out io.Writer

	r *bufio.Reader
}

// NewTerminalPrompter returns a prompter for in/out.
func NewTerminalPrompter(in io.Reader, out io.Writer) *TerminalPrompter {
	return &TerminalPrompter{In: in, Out: out}
}

func (p *TerminalPrompter) readLine(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if p.r == nil {
		p.r = bufio.NewReader(p.In)
	}
	line, err := p.r.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", fmt.Errorf("%w: %v", ErrNotTerminal, err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (p *TerminalPrompter) header(q Question) {
	if q.Description != "" {
		fmt.Fprintf(p.Out, "%s\n", q.Description)
	}
}

// Ask implements Prompter. An empty answer takes the default.
func (p *TerminalPrompter) Ask(ctx context.Context, q Question) (string, error) {
	p.header(q)
	if q.Default != "" {
		fmt.Fprintf(p.Out, "%s [%s]: ", q.Message, q.Default)
	} else {
		fmt.Fprintf(p.Out, "%s: ", q.Message)
	}
	line, err := p.readLine(ctx)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(line) == "" {
		return q.Default, nil
	}
	return line, nil
}

// Choose implements Prompter: answers are numbers or values; with multi,
// separated by commas.
func (p *TerminalPrompter) Choose(ctx context.Context, q Question, choices []Choice, multi bool) ([]string, error) {
	p.header(q)
	for i, c := range choices {
		label := c.Label
		if label == "" {
			label = c.Value
		}
		if c.Description != "" && c.Description != label {
			label += " - " + c.Description
		}
		fmt.Fprintf(p.Out, "  %d) %s\n", i+1, label)
	}
	hint := "number"
	if multi {
		hint = "numbers, comma separated"
	}
	for attempt := 0; attempt < 5; attempt++ {
		if q.Default != "" {
			fmt.Fprintf(p.Out, "%s (%s) [%s]: ", q.Message, hint, q.Default)
		} else {
			fmt.Fprintf(p.Out, "%s (%s): ", q.Message, hint)
		}
		line, err := p.readLine(ctx)
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(line) == "" {
			if q.Default != "" {
				return strings.Split(q.Default, ","), nil
			}
			if multi {
				return nil, nil
			}
			continue
		}
		var out []string
		ok := true
		for _, part := range strings.Split(line, ",") {
			part = strings.TrimSpace(part)
			if n, err := strconv.Atoi(part); err == nil && n >= 1 && n <= len(choices) {
				out = append(out, choices[n-1].Value)
				continue
			}
			found := false
			for _, c := range choices {
				if c.Value == part {
					out, found = append(out, c.Value), true
				}
			}
			ok = ok && found
		}
		if ok && (multi || len(out) == 1) {
			return out, nil
		}
		fmt.Fprintf(p.Out, "Please answer with a %s from the list.\n", hint)
	}
	return nil, fmt.Errorf("no valid answer for %s", q.Variable)
}
