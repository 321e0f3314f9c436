package overlay

import (
	"errors"
	"fmt"
)

// joinErrs wraps the non-nil errors of errs under one context, or is nil.
func joinErrs(context string, errs []error) error {
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", context, err)
	}
	return nil
}
