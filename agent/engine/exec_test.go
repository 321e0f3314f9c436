package engine

import (
	"context"
	"errors"
	"testing"

	"github.com/docker/docker/api/types/container"
)

type fakeExecAPI struct {
	resizeFails int
	resized     int
	inspects    int
}

func (f *fakeExecAPI) ContainerExecResize(context.Context, string, container.ResizeOptions) error {
	f.resized++
	if f.resized <= f.resizeFails {
		return errors.New("not running yet")
	}
	return nil
}

func (f *fakeExecAPI) ContainerExecInspect(context.Context, string) (container.ExecInspect, error) {
	f.inspects++
	return container.ExecInspect{Running: f.inspects < 3, ExitCode: 7}, nil
}

func TestInitExecSizeRetriesUntilTheProcessRuns(t *testing.T) {
	f := &fakeExecAPI{resizeFails: 2}
	initExecSize(context.Background(), f, "x", container.ResizeOptions{Height: 24, Width: 80})
	if f.resized != 3 {
		t.Fatalf("resized %d times, want 3", f.resized)
	}
}

func TestExecExitCodeWaitsForTheReap(t *testing.T) {
	f := &fakeExecAPI{}
	code, err := execExitCode(context.Background(), f, "x")
	if err != nil || code != 7 || f.inspects != 3 {
		t.Fatalf("code %d, err %v after %d inspects", code, err, f.inspects)
	}
}
