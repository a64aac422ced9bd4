package resource

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/coreos/go-systemd/v22/dbus"
)

// systemdAvailable says whether a systemd manager can be reached, and if
// not why.
func systemdAvailable() (bool, string) {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return false, "systemd is not the init system here (no /run/systemd/system)"
	}
	for _, p := range []string{"/run/systemd/private", "/run/dbus/system_bus_socket"} {
		if _, err := os.Stat(p); err == nil {
			return true, ""
		}
	}
	return false, "no systemd bus (neither /run/systemd/private nor the system D-Bus socket)"
}

// TestSystemd starts, monitors and stops a throw-away unit written to
// /run/systemd/system (runtime units vanish at reboot).
func TestSystemd(t *testing.T) {
	if ok, why := systemdAvailable(); !ok {
		t.Skip("the systemd agent needs a running systemd: " + why)
	}
	if os.Geteuid() != 0 {
		t.Skip("installing a test unit needs root")
	}
	unit := fmt.Sprintf("tandem-test-%d.service", os.Getpid())
	path := filepath.Join("/run/systemd/system", unit)
	if err := os.WriteFile(path, []byte("[Service]\nExecStart=/bin/sleep 600\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	reload := func() {
		c, err := dbus.NewWithContext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.ReloadContext(ctx); err != nil {
			t.Fatal(err)
		}
	}
	reload()
	t.Cleanup(func() {
		os.Remove(path)
		c, err := dbus.NewWithContext(context.Background())
		if err == nil {
			c.StopUnitContext(context.Background(), unit, "replace", nil)
			c.ReloadContext(context.Background())
			c.Close()
		}
	})
	a, err := NewService(ServiceSpec{Kind: Systemd, Name: unit})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := a.Monitor(ctx); st != Stopped || err != nil {
		t.Fatalf("monitor before start: %v, %v", st, err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := a.Monitor(ctx); st != Running || err != nil {
		t.Fatalf("monitor after start: %v, %v", st, err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := a.Monitor(ctx); st != Stopped || err != nil {
		t.Fatalf("monitor after stop: %v, %v", st, err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Errorf("second stop: %v", err)
	}
	missing, _ := NewService(ServiceSpec{Kind: Systemd, Name: "tandem-no-such-unit"})
	if st, err := missing.Monitor(ctx); st != Failed || err == nil {
		t.Errorf("monitor of a missing unit: %v, %v", st, err)
	}
}
