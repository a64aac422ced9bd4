package faults

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rates are a run's environment, drawn once per seed (swarm testing: each seed
// gets its own mix, so rare combinations get explored, as TigerBeetle's VOPR
// does). The simulator applies the probabilities itself; the timed faults
// (the *Every fields) are already expanded into the Schedule Swarm returns and
// are kept here for the trace header.
type Rates struct {
	// LatencyMin, LatencyMean and LatencyMax shape the one-way delay of every
	// directed link on every network medium.
	LatencyMin, LatencyMean, LatencyMax time.Duration
	// Loss, Duplicate and Reorder are per-packet probabilities; a reordered
	// packet is held back by up to ReorderDelay extra.
	Loss, Duplicate, Reorder float64
	ReorderDelay             time.Duration

	// SerialBaud is the serial cable's speed; SerialByteError the chance that
	// a byte arrives corrupted.
	SerialBaud      int
	SerialByteError float64

	// FenceDuration is the typical time a fence takes; FenceFail and
	// FenceTimeout are per-attempt probabilities of a reported failure and of
	// no answer at all.
	FenceDuration           time.Duration
	FenceFail, FenceTimeout float64
	// ActionDuration is the typical resource start/stop time; StartFail,
	// StopFail and MonitorFail are per-action failure probabilities.
	ActionDuration                   time.Duration
	StartFail, StopFail, MonitorFail float64

	// ClockDriftPPMMax bounds the initial |drift| the simulator draws per node.
	ClockDriftPPMMax int64

	// Mean time between events of each timed fault class (0 = never).
	CrashEvery, FreezeEvery, PartitionEvery, SerialCutEvery, ClockJumpEvery, FenceBreakEvery, AdminEvery time.Duration
	// ClockDriftEvery is the mean time between changes of one node's drift.
	ClockDriftEvery time.Duration
	// OutageMean is the mean time until the matching Restart, Thaw, Heal,
	// RestoreSerial, agent repair or admin online.
	OutageMean time.Duration
}

// Quiet are the rates of a fault-free run: realistic LAN latency and timings,
// no loss, no failures, no drift, no timed faults.
func Quiet() Rates {
	return Rates{
		LatencyMin:     50 * time.Microsecond,
		LatencyMean:    200 * time.Microsecond,
		LatencyMax:     2 * time.Millisecond,
		SerialBaud:     115200,
		FenceDuration:  2 * time.Second,
		ActionDuration: 500 * time.Millisecond,
	}
}

// ForLiveness returns the rates for the liveness phase: the same timings, but
// no loss, duplication, reordering, corruption, agent failures, drift or timed
// faults, so the cluster can be required to converge within a bound.
func (r Rates) ForLiveness() Rates {
	q := Quiet()
	q.LatencyMin, q.LatencyMean, q.LatencyMax = r.LatencyMin, r.LatencyMean, r.LatencyMax
	q.SerialBaud = r.SerialBaud
	q.FenceDuration, q.ActionDuration = r.FenceDuration, r.ActionDuration
	return q
}

// Describe summarises the rates in one line for the trace header, e.g.
// "lat=50µs/200µs/2ms loss=3% dup=1% serial=115200 fence=2s action=500ms
// crash/10m freeze/4m outage=45s". Zero probabilities and absent fault classes
// are left out, so a quiet run has a short line.
func (r Rates) Describe() string {
	var b []string
	add := func(format string, args ...any) { b = append(b, fmt.Sprintf(format, args...)) }
	pct := func(key string, p float64) {
		if p > 0 {
			add("%s=%s", key, percent(p))
		}
	}
	add("lat=%s/%s/%s", shortDur(r.LatencyMin), shortDur(r.LatencyMean), shortDur(r.LatencyMax))
	pct("loss", r.Loss)
	pct("dup", r.Duplicate)
	if r.Reorder > 0 {
		add("reorder=%s@%s", percent(r.Reorder), shortDur(r.ReorderDelay))
	}
	add("serial=%d", r.SerialBaud)
	pct("serial-err", r.SerialByteError)
	add("fence=%s", shortDur(r.FenceDuration))
	pct("fence-fail", r.FenceFail)
	pct("fence-timeout", r.FenceTimeout)
	add("action=%s", shortDur(r.ActionDuration))
	pct("start-fail", r.StartFail)
	pct("stop-fail", r.StopFail)
	pct("monitor-fail", r.MonitorFail)
	if r.ClockDriftPPMMax > 0 {
		add("drift<=%dppm", r.ClockDriftPPMMax)
	}
	timed := false
	for _, e := range []struct {
		key   string
		every time.Duration
	}{
		{"crash", r.CrashEvery}, {"freeze", r.FreezeEvery}, {"partition", r.PartitionEvery},
		{"serial-cut", r.SerialCutEvery}, {"clock-drift", r.ClockDriftEvery}, {"clock-jump", r.ClockJumpEvery},
		{"fence-break", r.FenceBreakEvery}, {"admin", r.AdminEvery},
	} {
		if e.every > 0 {
			add("%s/%s", e.key, shortDur(e.every))
			timed = true
		}
	}
	if timed {
		add("outage=%s", shortDur(r.OutageMean))
	}
	return strings.Join(b, " ")
}

// percent prints a probability with two significant digits: "3.1%", "12%", "0.0001%".
func percent(p float64) string {
	x := p * 100
	if x >= 10 {
		return strconv.FormatFloat(x, 'f', 0, 64) + "%"
	}
	return strconv.FormatFloat(x, 'g', 2, 64) + "%"
}

// shortDur prints a duration with about three significant digits in its most
// natural unit ("450µs", "1.2ms", "45s", "10m", "2.5h"), because trace
// headers are read, not parsed.
func shortDur(d time.Duration) string {
	f := func(v float64, unit string) string {
		if max(v, -v) >= 100 {
			return strconv.FormatFloat(v, 'f', 0, 64) + unit // 'g' would print 999.7 as 1e+03
		}
		return strconv.FormatFloat(v, 'g', 3, 64) + unit
	}
	switch a := max(d, -d); {
	case a == 0:
		return "0"
	case a < time.Millisecond:
		return f(float64(d)/float64(time.Microsecond), "µs")
	case a < time.Second:
		return f(float64(d)/float64(time.Millisecond), "ms")
	case a < time.Minute:
		return f(d.Seconds(), "s")
	case a < time.Hour:
		return f(d.Minutes(), "m")
	default:
		return f(d.Hours(), "h")
	}
}
