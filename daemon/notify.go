package daemon

import (
	"net"
	"os"
	"strconv"
	"time"
)

// notify sends a state line to systemd ($NOTIFY_SOCKET, sd_notify(3)); it
// does nothing when not run by systemd. Failures are ignored, as sd_notify's
// are: systemd's own timeouts report a daemon that never said READY.
func notify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}

// watchdogInterval is systemd's WatchdogSec for this process, or 0.
// WATCHDOG=1 is sent from the main loop, so a stuck loop stops it and
// systemd restarts the daemon.
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec == 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond
}
