package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDockerRuntimeOptions runs one instance with every option of a
// service that reaches the engine, and a second one that mounts its
// volumes and joins its network, on the real engine, and reads back what
// the engine made of them.
func TestDockerRuntimeOptions(t *testing.T) {
	rt, stack := engine(t)
	image := busyboxImage(t)
	ctx := context.Background()
	rec := &recorder{}
	a, err := New(Config{Runtime: rt, Reporter: rec, Logger: quiet(), Node: NodeInfo{NodeID: "test-" + stack, NodeName: "n1", GridName: "g"}})
	if err != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "hello"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	main := ContainerSpec{Name: stack + ".db-1", Stack: stack, Service: "db", Instance: 1, Revision: 1, Image: image,
		Cmd: []string{"sleep", "600"}, User: "1000:1000", CapDrop: []string{"CHOWN"}, ReadOnly: true, Pid: "host",
		CPUShares: 512, MemoryBytes: 64 << 20, MemorySwapBytes: 128 << 20, ShmBytes: 16 << 20,
		StopSignal: "SIGTERM", StopGrace: 3 * time.Second,
		Logging: Logging{Driver: "json-file", Options: map[string]string{"max-size": "1m"}},
		Volumes: []Volume{
			{Kind: VolumeBind, HostPath: host, Path: "/host", ReadOnly: true},
			{Kind: VolumeNamed, Name: "data", Path: "/data"},
			{Kind: VolumeNamed, Name: "shared", Scope: ScopeStack, Path: "/shared"},
		}}
	side := ContainerSpec{Name: stack + ".side-1", Stack: stack, Service: "side", Instance: 1, Revision: 1, Image: image,
		Cmd: []string{"sleep", "600"}, VolumesFrom: []string{main.Name}, NetworkMode: "container:" + main.Name}
	if err := a.Reconcile(ctx, []ContainerSpec{side, main}); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	var got []struct {
		Config struct {
			User        string
			StopSignal  string
			StopTimeout *int
		}
		HostConfig struct {
			CapDrop        []string
			ReadonlyRootfs bool
			PidMode        string
			CPUShares      int64
			Memory         int64
			MemorySwap     int64
			ShmSize        int64
			NetworkMode    string
			VolumesFrom    []string
			LogConfig      struct {
				Type   string
				Config map[string]string
			}
		}
		Mounts []struct {
			Type, Name, Source, Destination string
			RW                              bool
		}
	}
	if err := json.Unmarshal([]byte(docker(t, "inspect", main.Name, side.Name)), &got); err != nil || len(got) != 2 {
		t.Fatalf("inspect: %v", err)
	}
	m, s := got[0], got[1]
	hc := m.HostConfig
	if m.Config.User != "1000:1000" || m.Config.StopSignal != "SIGTERM" || m.Config.StopTimeout == nil || *m.Config.StopTimeout != 3 {
		t.Errorf("config: user %q stop %q timeout %v", m.Config.User, m.Config.StopSignal, m.Config.StopTimeout)
	}
	if !(slices.Contains(hc.CapDrop, "CHOWN") || slices.Contains(hc.CapDrop, "CAP_CHOWN")) || !hc.ReadonlyRootfs || hc.PidMode != "host" {
		t.Errorf("cap_drop %v read_only %v pid %q", hc.CapDrop, hc.ReadonlyRootfs, hc.PidMode)
	}
	if hc.CPUShares != 512 || hc.Memory != 64<<20 || hc.MemorySwap != 128<<20 || hc.ShmSize != 16<<20 {
		t.Errorf("cpu_shares %d mem %d memswap %d shm %d", hc.CPUShares, hc.Memory, hc.MemorySwap, hc.ShmSize)
	}
	if hc.LogConfig.Type != "json-file" || hc.LogConfig.Config["max-size"] != "1m" {
		t.Errorf("logging %+v", hc.LogConfig)
	}
	mounts := map[string]string{}
	for _, mt := range m.Mounts {
		mounts[mt.Destination] = mt.Type + ":" + mt.Name + mt.Source
		if mt.Destination == "/host" && mt.RW {
			t.Errorf("bind mount /host is writable")
		}
	}
	if !strings.HasPrefix(mounts["/host"], "bind:"+host) || mounts["/data"] == "" || !strings.Contains(mounts["/data"], "volume:"+main.Name+".data") ||
		!strings.Contains(mounts["/shared"], "volume:"+stack+".shared") {
		t.Errorf("mounts %v", mounts)
	}
	if s.HostConfig.NetworkMode != "container:"+main.Name && !strings.HasPrefix(s.HostConfig.NetworkMode, "container:") {
		t.Errorf("side network mode %q", s.HostConfig.NetworkMode)
	}
	if !slices.Contains(s.HostConfig.VolumesFrom, main.Name) {
		t.Errorf("side volumes_from %v", s.HostConfig.VolumesFrom)
	}
	if out := docker(t, "exec", side.Name, "cat", "/host/hello"); out != "from the host" {
		t.Errorf("side reads %q through volumes_from", out)
	}
	if out := docker(t, "exec", main.Name, "id", "-u"); out != "1000" {
		t.Errorf("runs as uid %q", out)
	}
	if code, _, _ := rt.Exec(ctx, docker(t, "inspect", "-f", "{{.Id}}", main.Name), []string{"/bin/sh", "-c", "touch /x"}); code == 0 {
		t.Errorf("read_only root: touch / succeeded")
	}
}

// TestDockerImagePull: an image the node does not have is pulled; when no
// registry has it, the instance fails and says so.
func TestDockerImagePull(t *testing.T) {
	rt, stack := engine(t)
	ctx := context.Background()
	rec := &recorder{}
	a, err := New(Config{Runtime: rt, Reporter: rec, Logger: quiet(), Node: NodeInfo{NodeID: "test-" + stack, NodeName: "n1", GridName: "g"}})
	if err != nil {
		t.Fatal(err)
	}
	s := ContainerSpec{Name: stack + ".web-1", Stack: stack, Service: "web", Instance: 1, Revision: 1,
		Image: "127.0.0.1:1/kontena-no-such-image:" + randID(t)}
	if err := a.Reconcile(ctx, []ContainerSpec{s}); err == nil {
		t.Fatal("a missing image with no registry must fail")
	}
	st := rec.get(s.Name)
	if st.State != StateFailed || !strings.Contains(st.Error, "not on this node, and pulling it failed") || !strings.Contains(st.Error, s.Image) {
		t.Fatalf("status %+v", st)
	}
}
