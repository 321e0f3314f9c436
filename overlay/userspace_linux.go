package overlay

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

const (
	tunDevice = "/dev/net/tun"
	// uapiDir is where wireguard-go's ipc package puts the UAPI sockets and
	// where wgctrl and wg(8) look for them.
	uapiDir = "/var/run/wireguard"
)

// userspace is an embedded wireguard-go device with its UAPI listener, the
// socket through which wgctrl (and `wg show`) configure and read it.
type userspace struct {
	name string
	dev  *device.Device
	uapi net.Listener
	done chan struct{} // closed when the accept loop ends
}

func startUserspace(name string, mtu int, log *slog.Logger) (*userspace, error) {
	if _, err := os.Stat(tunDevice); err != nil {
		return nil, fmt.Errorf("overlay: create %s: %w: %w", name, ErrNoTUN, err)
	}
	tdev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		switch {
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("overlay: create %s: %w: %w", name, ErrNoTUN, err)
		case errors.Is(err, unix.EBUSY):
			return nil, fmt.Errorf("overlay: interface %s is held by another process (another kontena or wireguard-go?); stop it or choose another interface name: %w", name, err)
		}
		return nil, fmt.Errorf("overlay: create TUN interface %s: %w", name, err)
	}
	uapiFile, err := ipc.UAPIOpen(name)
	if err != nil {
		tdev.Close()
		return nil, fmt.Errorf("overlay: open UAPI socket %s (is %s writable?): %w", uapiPath(name), uapiDir, err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), wgLogger(log))
	l, err := ipc.UAPIListen(name, uapiFile)
	uapiFile.Close() // UAPIListen holds its own descriptor
	if err != nil {
		dev.Close()
		os.Remove(uapiPath(name))
		return nil, fmt.Errorf("overlay: listen on UAPI socket %s: %w", uapiPath(name), err)
	}
	u := &userspace{name: name, dev: dev, uapi: l, done: make(chan struct{})}
	go u.serveUAPI()
	return u, nil
}

// serveUAPI hands every wgctrl connection to the device. It ends when the
// listener closes, or when someone deletes the socket file (ipc watches it).
func (u *userspace) serveUAPI() {
	defer close(u.done)
	for {
		c, err := u.uapi.Accept()
		if err != nil {
			return
		}
		go u.dev.IpcHandle(c)
	}
}

func (u *userspace) close() error {
	u.uapi.Close() // unlinks the socket
	<-u.done
	u.dev.Close() // closes the TUN, which removes the interface
	if err := os.Remove(uapiPath(u.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove UAPI socket: %w", err)
	}
	return nil
}

func uapiPath(name string) string { return uapiDir + "/" + name + ".sock" }

// uapiInUse reports whether a live process serves the UAPI socket of name.
func uapiInUse(name string) bool {
	c, err := net.Dial("unix", uapiPath(name))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// wgLogger routes wireguard-go's log to slog: its verbose lines (every
// handshake) at debug, its errors (mostly unreachable peers) at warn.
// Formatting is skipped entirely when the level is off, since some of these
// calls sit on the packet path.
func wgLogger(log *slog.Logger) *device.Logger {
	l := &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf}
	ctx := context.Background()
	if log.Enabled(ctx, slog.LevelDebug) {
		l.Verbosef = func(format string, args ...any) { log.Debug("wireguard: " + fmt.Sprintf(format, args...)) }
	}
	if log.Enabled(ctx, slog.LevelWarn) {
		l.Errorf = func(format string, args ...any) { log.Warn("wireguard: " + fmt.Sprintf(format, args...)) }
	}
	return l
}
