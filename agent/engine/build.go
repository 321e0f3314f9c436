package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/pkg/jsonmessage"
)

// BuildSelfImage builds (once: an image of that tag is kept) a minimal
// image holding only the executable at exe, as /kontena: what the node
// runs a load balancer from, so that no image is pulled for it.
func (e *Engine) BuildSelfImage(ctx context.Context, tag, exe string) error {
	if e.InspectImage(ctx, tag) == nil {
		return nil
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		return fmt.Errorf("build %s: read this executable: %w", tag, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dockerfile := []byte("FROM scratch\nCOPY kontena /kontena\nENTRYPOINT [\"/kontena\"]\n")
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, dockerfile}, {"kontena", 0o755, bin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	resp, err := e.cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true,
		Labels: map[string]string{"io.kontena.self": "true"}})
	if err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("build %s: %w", tag, err)
		}
		if m.Error != nil {
			return fmt.Errorf("build %s: %s", tag, m.Error.Message)
		}
	}
}
